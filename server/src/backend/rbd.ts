import * as fs from 'node:fs';
import { Socket } from 'node:net';
import { errnoCode, systemError } from '@wsblk/native';
import { logger } from '@wsblk/shared';
import type { Backend, BackendInfo, ClusterLock, LockTaken, LockWriter, RequestContext } from './backend.js';
import {
  EVENT_TYPE_PIPE, RBD_LOCK_MODE_EXCLUSIVE, RBD_WRITE_ZEROES_FLAG_THICK_PROVISION, callAsync, librbd,
  type Handle, type Librbd,
} from './librbd.js';
import { WRITER_KEY, heldFor, parseWriterRecord, writerRecord } from './writer-record.js';

export interface RbdBackendOptions {
  pool: string;
  image: string;
  /** ceph.conf to read; librados's default search (CEPH_CONF, /etc/ceph/ceph.conf) when absent. */
  conf?: string;
  /** The cephx user without "client.", e.g. "wsblk"; librados's default (admin) when absent. */
  id?: string;
  readOnly?: boolean;
  blockSize?: number;
}

/** RBD's exclusive-lock feature bit (rbd_get_features). */
const FEATURE_EXCLUSIVE_LOCK = 1n << 2n;
/** The image metadata key that holds the export's replica-set record (base64). */
const META_KEY = 'wsblk.replica-record';
/** How often the image's size is read again (an `rbd resize` elsewhere). */
const SIZE_REFRESH_MS = 500;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

const log = logger('rbd');
/** What librados answers a client that `ceph osd blocklist` fenced (EBLOCKLISTED is ESHUTDOWN). */
const EBLOCKLISTED = 108;

/** One connection to the cluster with the image open on it; replaced when Ceph blocklists it. */
interface Conn {
  cluster: Handle;
  ioctx: Handle;
  image: Handle;
  pipe: { read: number; write: number };
  /** The pipe's read end as a stream: librbd's completions wake the event loop through it. */
  events: Socket;
  size: number;
}

/** A failed librbd call as Node reports a failed system call: statusOfError maps it to the reply's errno. */
function rbdError(ret: number, call: string): NodeJS.ErrnoException {
  const errno = -ret;
  return systemError(errnoCode(errno), errno, `${call}: ${errnoCode(errno)}`, call);
}

interface Pending {
  comp: Handle;
  /** Keeps the request's buffer alive while librbd reads or fills it. */
  buf: Buffer | null;
  call: string;
  resolve(ret: number): void;
  reject(e: Error): void;
}

/**
 * An RBD image through librbd's asynchronous calls. No thread waits per request: librbd writes a
 * byte to a pipe per completion (rbd_set_image_notification), the event loop reads the pipe and
 * collects the finished completions with rbd_poll_io_events. The cross-gateway writer lock is
 * RBD's exclusive lock, taken explicitly (rbd_lock_acquire), which also stops librbd from
 * handing it to another client's write behind our back.
 */
export class RbdBackend implements Backend, ClusterLock {
  readonly description: string;
  private size: number;
  private readonly pending = new Map<bigint, Pending>();
  /** Completions of every connection, the ones a blocklisted connection still owes too. */
  private readonly comps = Buffer.alloc(8 * 64);
  /** The connection requests go to (a new one after a blocklist: reconnect). */
  private conn: Conn;
  private readonly refresh: NodeJS.Timeout;
  private refreshing = false;
  private lockChain: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly lib: Librbd,
    conn: Conn,
    private readonly opts: RbdBackendOptions & { blockSize: number; readOnly: boolean },
  ) {
    this.description = `rbd:${opts.pool}/${opts.image}`;
    this.size = conn.size;
    this.conn = this.listen(conn);
    this.refresh = setInterval(() => this.refreshSize(), SIZE_REFRESH_MS).unref();
  }

  static async open(opts: RbdBackendOptions): Promise<RbdBackend> {
    const lib = librbd();
    const full = { ...opts, blockSize: opts.blockSize ?? 512, readOnly: opts.readOnly ?? false };
    return new RbdBackend(lib, await connect(lib, full), full);
  }

  /** Collects `c`'s completions as librbd signals them (each connection polls its own image). */
  private listen(c: Conn): Conn {
    c.events.on('data', () => this.collect(c.image));
    c.events.unref();
    return c;
  }

  /**
   * Ceph blocklisted this gateway's client (another gateway stole or reclaimed the image): every
   * call on it fails with EBLOCKLISTED for good. A new writer admitted here (its session table
   * evicted the old one first) gets a new client: a new connection, the image opened again. The
   * old one is closed in the background; what it still owes fails as blocklisted.
   */
  private async reconnect(): Promise<void> {
    const old = this.conn;
    this.conn = this.listen(await connect(this.lib, this.opts));
    log.warn(`${this.description}: Ceph blocklisted this gateway's client (another gateway took the image over); connected again as a new client`);
    void this.disconnect(old).catch((e: Error) => log.warn(`${this.description}: closing the blocklisted connection: ${e.message}`));
  }

  private async disconnect(c: Conn): Promise<void> {
    await callAsync(this.lib.rbd_close, c.image);
    c.events.destroy();
    this.lib.rados_ioctx_destroy(c.ioctx);
    await callAsync(this.lib.rados_shutdown, c.cluster);
    fs.closeSync(c.pipe.write);
  }

  get info(): BackendInfo {
    const rw = !this.opts.readOnly;
    return { size: this.size, blockSize: this.opts.blockSize, readOnly: !rw, flush: rw, fua: rw, discard: rw, writeZeroes: rw };
  }

  async read(_ctx: RequestContext, offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafeSlow(length);
    const n = await this.submit('rbd_aio_read', buf, (c) => this.lib.rbd_aio_read(this.conn.image, offset, length, buf, c));
    // A read past a shrunken image's end comes back short: the rest reads as zeroes.
    if (n < length) buf.fill(0, Math.max(0, n));
    return buf;
  }

  async write(_ctx: RequestContext, offset: number, data: Buffer, fua: boolean): Promise<void> {
    await this.submit('rbd_aio_write', data, (c) => this.lib.rbd_aio_write(this.conn.image, offset, data.length, data, c));
    if (fua) await this.flush(_ctx);
  }

  async flush(_ctx: RequestContext): Promise<void> {
    await this.submit('rbd_aio_flush', null, (c) => this.lib.rbd_aio_flush(this.conn.image, c));
  }

  async discard(_ctx: RequestContext, offset: number, length: number): Promise<void> {
    await this.submit('rbd_aio_discard', null, (c) => this.lib.rbd_aio_discard(this.conn.image, offset, length, c));
  }

  async writeZeroes(ctx: RequestContext, offset: number, length: number, noUnmap: boolean, fua: boolean): Promise<void> {
    const flags = noUnmap ? RBD_WRITE_ZEROES_FLAG_THICK_PROVISION : 0;
    await this.submit('rbd_aio_write_zeroes', null, (c) => this.lib.rbd_aio_write_zeroes(this.conn.image, offset, length, c, flags, 0));
    if (fua) await this.flush(ctx);
  }

  /** The record is image metadata (rbd image-meta), base64: it moves with the image. */
  async readMeta(): Promise<Buffer | null> {
    const text = await this.getMetadata(META_KEY);
    return text === null ? null : Buffer.from(text, 'base64');
  }

  writeMeta(data: Buffer): Promise<void> {
    return this.setMetadata(META_KEY, data.toString('base64'));
  }

  /**
   * Takes the image's exclusive lock for this gateway's writer. Held by another client: refused
   * (EBUSY), unless `steal`: the owner is blocklisted and its lock broken (rbd_lock_break
   * blocklists by default, rbd_blocklist_on_break_lock), so its late writes cannot land. A
   * `reclaim` is a steal only when the image's writer record says the owner took the lock for
   * this same device (its secret's hash): the device failed over and takes its own lock back.
   * Once taken, the record names this writer and this gateway.
   */
  acquireLock(steal: boolean, writer: LockWriter, vacant: () => boolean): Promise<LockTaken> {
    return this.serially(async () => {
      try {
        return await this.takeLock(steal, writer, vacant);
      } catch (e) {
        // Blocklisted by another gateway's steal or reclaim: this writer gets a new client.
        if ((e as NodeJS.ErrnoException).errno !== -EBLOCKLISTED || this.closed) throw e;
        await this.reconnect();
        return this.takeLock(steal, writer, vacant);
      }
    });
  }

  private async takeLock(steal: boolean, writer: LockWriter, vacant: () => boolean): Promise<LockTaken> {
    let reclaimedFrom: string | undefined;
    // A steal does not ask the owner first: a frozen or dead gateway would not answer (librbd
    // waits for it, up to Ceph's watch timeout).
    if (steal) await this.breakLock();
    else if (writer.reclaim && writer.secretHash) {
      const owner = await this.lockOwner();
      if (owner && !this.ownsLock() && heldFor(parseWriterRecord(await this.getMetadata(WRITER_KEY)), owner, writer.secretHash)) {
        await this.breakLock(owner);
        reclaimedFrom = owner;
      }
    }
    const r = await callAsync(this.lib.rbd_lock_acquire, this.conn.image, RBD_LOCK_MODE_EXCLUSIVE);
    if (r === 0) {
      // Another writer of this gateway was admitted meanwhile: it holds the lock, its record stays.
      if (!vacant()) return { owner: (await this.lockOwner()) ?? '' };
      // Without a record of this writer, an older one (of an earlier writer through this very
      // gateway) could let that device take the lock back from this one: no record, no lock.
      try {
        const me = await this.lockOwner();
        if (!me) throw new Error('the lock has no owner after rbd_lock_acquire');
        await this.setMetadata(WRITER_KEY, writerRecord(writer, me));
        return { owner: me, ...(reclaimedFrom ? { reclaimedFrom } : {}) };
      } catch (e) {
        await callAsync(this.lib.rbd_lock_release, this.conn.image);
        throw new Error(`image ${this.opts.pool}/${this.opts.image}: cannot record its writer: ${(e as Error).message}`);
      }
    }
    // EROFS: the owner took it explicitly and refuses to hand it over; EBUSY: another is busy taking it.
    if (r !== -30 && r !== -16) throw rbdError(r, 'rbd_lock_acquire');
    const owner = await this.lockOwner();
    throw new Error(`image ${this.opts.pool}/${this.opts.image} is locked by another gateway${owner ? ` (${owner})` : ''}`);
  }

  /** Blocklists the lock's owner (unless it is this gateway) and breaks its lock. */
  private async breakLock(known?: string): Promise<void> {
    if (this.ownsLock()) return;
    const owner = known ?? await this.lockOwner();
    if (!owner) return;
    const r = await callAsync(this.lib.rbd_lock_break, this.conn.image, RBD_LOCK_MODE_EXCLUSIVE, owner);
    if (r < 0 && r !== -2 /* ENOENT: released meanwhile */) throw rbdError(r, 'rbd_lock_break');
  }

  /** Lets another gateway's writer take the image (this gateway's writer session is gone). */
  releaseLock(): Promise<void> {
    return this.serially(async () => {
      if (this.closed || !this.ownsLock()) return;
      const r = await callAsync(this.lib.rbd_lock_release, this.conn.image);
      if (r < 0) throw rbdError(r, 'rbd_lock_release');
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.lockChain.catch(() => undefined);
    this.closed = true;
    clearInterval(this.refresh);
    if (!this.opts.readOnly) await this.flush({ session: '', epoch: 0, seq: 0 }).catch(() => undefined);
    await this.disconnect(this.conn);
  }

  private ownsLock(): boolean {
    const mine = [0];
    return this.lib.rbd_is_exclusive_lock_owner(this.conn.image, mine) === 0 && mine[0] !== 0;
  }

  /** An image metadata value (rbd image-meta), or null when the key is absent. */
  private async getMetadata(key: string): Promise<string | null> {
    const value = Buffer.alloc(8192);
    const len = [value.length];
    const r = await callAsync(this.lib.rbd_metadata_get, this.conn.image, key, value, len);
    if (r === -2 /* ENOENT */) return null;
    if (r < 0) throw rbdError(r, 'rbd_metadata_get');
    // The value ends at its NUL (the length koffi writes back is not to be trusted for that).
    const end = value.indexOf(0);
    return value.subarray(0, end < 0 ? Math.max(0, Number(len[0]) - 1) : end).toString();
  }

  private async setMetadata(key: string, value: string): Promise<void> {
    const r = await callAsync(this.lib.rbd_metadata_set, this.conn.image, key, value);
    if (r < 0) throw rbdError(r, 'rbd_metadata_set');
  }

  private async lockOwner(): Promise<string | undefined> {
    const mode = [0];
    const owners: unknown[] = [null];
    const max = [1];
    const r = await callAsync(this.lib.rbd_lock_get_owners, this.conn.image, mode, owners, max);
    return r === 0 && typeof owners[0] === 'string' ? owners[0] : undefined;
  }

  private serially<T>(op: () => Promise<T>): Promise<T> {
    const next = this.lockChain.catch(() => undefined).then(op);
    this.lockChain = next;
    return next;
  }

  /** Starts one aio call; resolves with its non-negative result, rejects with its errno. */
  private submit(call: string, buf: Buffer | null, start: (comp: Handle) => number): Promise<number> {
    if (this.closed) return Promise.reject(rbdError(-108, call));
    return new Promise((resolve, reject) => {
      const out: unknown[] = [null];
      const r0 = this.lib.rbd_aio_create_completion(null, null, out);
      if (r0 < 0) return reject(rbdError(r0, 'rbd_aio_create_completion'));
      const comp = out[0];
      const key = this.lib.koffi.address(comp);
      this.pending.set(key, { comp, buf, call, resolve, reject });
      if (this.pending.size === 1) this.conn.events.ref();
      const r = start(comp);
      if (r < 0) {
        this.pending.delete(key);
        this.lib.rbd_aio_release(comp);
        reject(rbdError(r, call));
      }
    });
  }

  /** A connection's pipe said some completions finished: settle every one librbd has queued for `image`. */
  private collect(image: Handle): void {
    for (;;) {
      const n = this.lib.rbd_poll_io_events(image, this.comps, this.comps.length / 8);
      if (n <= 0) break;
      for (let i = 0; i < n; i++) {
        const key = this.comps.readBigUInt64LE(i * 8);
        const p = this.pending.get(key);
        if (!p) continue;
        this.pending.delete(key);
        const ret = Number(this.lib.rbd_aio_get_return_value(p.comp));
        this.lib.rbd_aio_release(p.comp);
        if (ret < 0) p.reject(rbdError(ret, p.call));
        else p.resolve(ret);
      }
      if (n < this.comps.length / 8) break;
    }
    if (this.pending.size === 0) this.conn.events.unref();
  }

  private refreshSize(): void {
    if (this.refreshing || this.closed) return;
    this.refreshing = true;
    const size = [0];
    callAsync(this.lib.rbd_get_size, this.conn.image, size)
      .then((r) => { if (r === 0 && !this.closed) this.size = Number(size[0]); })
      .catch(() => undefined)
      .finally(() => { this.refreshing = false; });
  }
}

/** Connects to the cluster as a new client and opens the image (checked: size, exclusive lock), its completions signalled through a pipe. */
async function connect(lib: Librbd, opts: RbdBackendOptions & { blockSize: number; readOnly: boolean }): Promise<Conn> {
  const { blockSize, readOnly } = opts;
  const where = `rbd:${opts.pool}/${opts.image}`;
  const out: unknown[] = [null];
  let r = lib.rados_create(out, opts.id ?? null);
  if (r < 0) throw new Error(`${where}: rados_create: ${errnoCode(-r)}`);
  const cluster = out[0];
  let ioctx: Handle = null;
  let image: Handle = null;
  try {
    r = lib.rados_conf_read_file(cluster, opts.conf ?? null);
    if (r < 0) throw new Error(`${where}: cannot read ${opts.conf ?? 'the default ceph.conf'}: ${errnoCode(-r)}`);
    // A partial discard must zero its range (NBD's TRIM here promises zeroes), not be skipped.
    lib.rados_conf_set(cluster, 'rbd_skip_partial_discard', 'false');
    r = await callAsync(lib.rados_connect, cluster);
    if (r < 0) throw new Error(`${where}: cannot connect to the Ceph cluster: ${errnoCode(-r)}`);
    r = await callAsync(lib.rados_ioctx_create, cluster, opts.pool, out);
    if (r < 0) throw new Error(`${where}: pool '${opts.pool}': ${errnoCode(-r)}`);
    ioctx = out[0];
    r = await callAsync(readOnly ? lib.rbd_open_read_only : lib.rbd_open, ioctx, opts.image, out, null);
    if (r < 0) throw new Error(`${where}: cannot open the image: ${errnoCode(-r)}`);
    image = out[0];
    const size = [0];
    r = lib.rbd_get_size(image, size);
    if (r < 0) throw new Error(`${where}: rbd_get_size: ${errnoCode(-r)}`);
    if (size[0] === 0 || size[0]! % blockSize !== 0) {
      throw new Error(`${where}: size ${size[0]} is not a non-zero multiple of the block size ${blockSize}`);
    }
    if (!readOnly) {
      const features = [0n];
      lib.rbd_get_features(image, features);
      if ((BigInt(features[0] as bigint) & FEATURE_EXCLUSIVE_LOCK) === 0n) {
        throw new Error(`${where}: the image needs the exclusive-lock feature (rbd feature enable ${opts.pool}/${opts.image} exclusive-lock), or export it ,ro`);
      }
    }
    const fds = new Int32Array(2);
    if (lib.pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) throw new Error(`${where}: pipe2 failed`);
    r = lib.rbd_set_image_notification(image, fds[1], EVENT_TYPE_PIPE);
    if (r < 0) throw new Error(`${where}: rbd_set_image_notification: ${errnoCode(-r)}`);
    const pipe = { read: fds[0]!, write: fds[1]! };
    return { cluster, ioctx, image, pipe, events: new Socket({ fd: pipe.read, readable: true, writable: false }), size: Number(size[0]) };
  } catch (e) {
    if (image) lib.rbd_close(image);
    if (ioctx) lib.rados_ioctx_destroy(ioctx);
    lib.rados_shutdown(cluster);
    throw e;
  }
}
