// The ublk frontend: the kernel's block requests for /dev/ublkbN become BlockTarget requests.
// Each tag gets one reusable request object and one completion callback, made once, so the
// hot path allocates nothing of its own per request; write data is handed over as a view of the
// tag's buffer (shared with the kernel; the transport copies what it keeps past the completion)
// and read data copied straight into it.
import { Errno, FLAG_FUA, FLAG_NO_UNMAP, Op, errnoName, logger } from '@wsblk/shared';
import {
  UBLK_IO_F, UBLK_IO_F_FAILFAST, UBLK_IO_OP, addDevice, openQueues, type UblkQueue, blockDevicePath, deleteDevice, getDeviceInfo, recoverDevice,
  setParams, startDevice, stopDevice, type UblkDeviceInfo, type UblkQueueHandlers, type UblkRequestBatch,
} from '@wsblk/native';
import type { BlockTarget, IoCallback, IoRequest } from '../target.js';
import { FAILFAST_DEFAULT_MS, FailfastDeadlines } from './failfast.js';

const log = logger('ublk');

export interface UblkDeviceOptions {
  /** Device id to ask for (-1: the first free one). */
  id: number;
  queues: number;
  depth: number;
  maxIoBytes: number;
  blockSize: 512 | 4096;
  /** Deadline of a failfast request (md's members), ms; 0 = none (it waits like any other). Default 5 s. */
  failfastMs?: number;
}

/** One queue's tags: the request each tag is carrying, and its completion callback. */
class TagSlots {
  readonly reqs: IoRequest[] = [];
  readonly cbs: IoCallback[] = [];
  readonly ops: number[] = [];
  readonly failfast: FailfastDeadlines | undefined;

  constructor(depth: number, failfastMs: number, complete: (tag: number, status: number, data?: Buffer) => void, expired: (req: IoRequest) => void) {
    for (let t = 0; t < depth; t++) {
      this.reqs.push({ op: Op.Read, offset: 0, length: 0, flags: 0, payload: undefined });
      this.cbs.push((status, data) => complete(t, status, data));
      this.ops.push(0);
    }
    this.failfast = failfastMs > 0 ? new FailfastDeadlines(depth, failfastMs, complete, (_tag, req) => expired(req)) : undefined;
  }
}

export class UblkFrontend {
  readonly kind = 'ublk' as const;
  private queues: UblkQueue[] = [];
  private slots: TagSlots[] = [];
  private inflight = 0;
  private closing: Promise<void> | undefined;
  private failfastExpired = 0;
  private failfastLogged = 0;

  private constructor(readonly target: BlockTarget, readonly info: UblkDeviceInfo, private readonly failfastMs: number) {}

  get id(): number {
    return this.info.id;
  }

  get device(): string {
    return blockDevicePath(this.info.id);
  }

  get outstanding(): number {
    return this.inflight;
  }

  /**
   * ADD_DEV, SET_PARAMS from the export (size, block size, flush/FUA, discard, write zeroes),
   * open and FETCH every queue, START_DEV. On any failure the device is deleted again.
   */
  static async create(target: BlockTarget, o: UblkDeviceOptions): Promise<UblkFrontend> {
    const d = target.info;
    if (d.size % o.blockSize !== 0) {
      throw new Error(`the export's size ${d.size} is not a multiple of the block size ${o.blockSize}`);
    }
    // One request must fit in one protocol request: the tag buffer is the largest I/O.
    const maxIo = Math.min(o.maxIoBytes, d.maxPayload);
    const info = await addDevice({ id: o.id, queues: o.queues, depth: o.depth, maxIoBytes: maxIo, recovery: 'reissue' });
    const fe = new UblkFrontend(target, info, o.failfastMs ?? FAILFAST_DEFAULT_MS);
    try {
      await setParams(info.id, {
        sizeBytes: d.size,
        logicalBlockSize: o.blockSize,
        physicalBlockSize: Math.max(o.blockSize, d.blockSize, 4096),
        volatileCache: d.flush,
        fua: d.fua && d.flush,
        readOnly: d.readOnly,
        ...(d.discard || d.writeZeroes ? {
          discard: {
            granularityBytes: Math.max(o.blockSize, 4096),
            maxDiscardSectors: d.discard ? 0xffffffff >>> 9 : 0,
            maxWriteZeroesSectors: d.writeZeroes ? 0xffffffff >>> 9 : 0,
          },
        } : {}),
      });
      await fe.openQueues(info);
      await startDevice(info.id);
    } catch (e) {
      await fe.teardown();
      throw e;
    }
    log.info(`${fe.device}: ${info.nrQueues} queue(s) x ${info.queueDepth} tags, max I/O ${info.maxIoBytes} bytes`);
    return fe;
  }

  /**
   * Takes over a device whose daemon died (QUIESCED): the kernel reissues what the dead one held.
   * `beforeEnd` runs after every tag is fetched and before requests flow (fence the old session).
   */
  static async recover(target: BlockTarget, id: number, failfastMs = FAILFAST_DEFAULT_MS): Promise<UblkFrontend> {
    let fe: UblkFrontend | undefined;
    const rec = await recoverDevice(id, {
      handlers: (q) => {
        // recoverDevice asks for handlers before it knows the frontend: bind lazily.
        return { onRequests: (b, queue) => fe!.onRequests(q, b, queue), onStopped: () => fe?.onStopped(q) };
      },
      beforeEnd: async (info, queues) => {
        // Requests flow as soon as END_USER_RECOVERY returns: be ready to take them first.
        fe = new UblkFrontend(target, info, failfastMs);
        fe.slots = Array.from({ length: info.nrQueues }, (_, q) => fe!.newSlots(q, info.queueDepth));
        fe.queues = queues;
      },
    });
    log.info(`${fe!.device}: recovered (${rec.info.nrQueues} queue(s) x ${rec.info.queueDepth} tags)`);
    return fe!;
  }

  private async openQueues(info: UblkDeviceInfo): Promise<void> {
    for (let q = 0; q < info.nrQueues; q++) {
      this.slots.push(this.newSlots(q, info.queueDepth));
    }
    this.queues = await openQueues({ device: info, handlers: (q) => this.handlers(q) });
  }

  private newSlots(q: number, depth: number): TagSlots {
    return new TagSlots(depth, this.failfastMs, (t, s, d) => this.complete(q, t, s, d), (req) => {
      this.failfastExpired++;
      // Once a second at most: a dead server expires a whole queue's worth at once.
      const now = Date.now();
      if (now - this.failfastLogged < 1000) return;
      this.failfastLogged = now;
      log.warn(`${this.device}: failfast ${Op[req.op]} ${req.offset}+${req.length}: no answer in ${this.failfastMs / 1000} s, `
        + `failed with EIO (${this.failfastExpired} failfast requests expired so far)`);
    });
  }

  private handlers(q: number): UblkQueueHandlers {
    return {
      onRequests: (batch, queue) => this.onRequests(q, batch, queue),
      onStopped: () => this.onStopped(q),
      onFault: (fault) => log.error(`${this.device}: queue ${q}: ${fault.message}`),
    };
  }

  private onStopped(q: number): void {
    log.info(`${this.device}: queue ${q} stopped by the kernel`);
  }

  private onRequests(q: number, batch: UblkRequestBatch, queue: UblkQueue): void {
    const slots = this.slots[q]!;
    for (let i = 0; i < batch.length; i++) {
      const tag = batch.tag(i);
      const kop = batch.op(i);
      const kflags = batch.flags(i);
      const bytes = batch.bytes(i);
      const req = slots.reqs[tag]!;
      req.offset = batch.offset(i);
      req.length = bytes;
      req.flags = (kflags & UBLK_IO_F.FUA) !== 0 ? FLAG_FUA : 0;
      req.payload = undefined;
      switch (kop) {
        case UBLK_IO_OP.READ: req.op = Op.Read; break;
        case UBLK_IO_OP.WRITE: req.op = Op.Write; req.payload = queue.tagBuffer(tag).subarray(0, bytes); break;
        case UBLK_IO_OP.FLUSH: req.op = Op.Flush; req.offset = 0; req.length = 0; break;
        case UBLK_IO_OP.DISCARD: req.op = Op.Discard; break;
        case UBLK_IO_OP.WRITE_ZEROES:
          req.op = Op.WriteZeroes;
          if ((kflags & UBLK_IO_F.NOUNMAP) !== 0) req.flags |= FLAG_NO_UNMAP;
          break;
        default:
          queue.complete(tag, -Errno.ENOTSUP);
          continue;
      }
      slots.ops[tag] = req.op;
      this.inflight++;
      if (slots.failfast && (kflags & UBLK_IO_F_FAILFAST) !== 0) slots.failfast.submit(this.target, tag, req);
      else this.target.submit(req, slots.cbs[tag]!);
    }
  }

  private complete(q: number, tag: number, status: number, data?: Buffer): void {
    this.inflight--;
    const queue = this.queues[q];
    if (!queue || queue.closed) return;
    const slots = this.slots[q]!;
    const req = slots.reqs[tag]!;
    req.payload = undefined;
    if (status !== 0) {
      if (status !== Errno.ESHUTDOWN) log.warn(`${this.device}: ${Op[req.op]} ${req.offset}+${req.length}: ${errnoName(status)}`);
      queue.complete(tag, -status);
      return;
    }
    if (req.op === Op.Read) {
      data!.copy(queue.tagBuffer(tag), 0, 0, req.length);
      queue.complete(tag, req.length);
    } else {
      queue.complete(tag, req.op === Op.Write ? req.length : 0);
    }
  }

  status(): Record<string, unknown> {
    return {
      devId: this.info.id, queues: this.info.nrQueues, depth: this.info.queueDepth, outstanding: this.inflight,
      failfastTimeout: this.failfastMs / 1000, failfastExpired: this.failfastExpired,
    };
  }

  /**
   * Disconnect: STOP_DEV (the kernel waits for in-flight requests, which we keep serving, then
   * aborts the queues), close the queues, DEL_DEV.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await stopDevice(this.info.id);
      } catch (e) {
        log.warn(`${this.device}: STOP_DEV: ${(e as Error).message}`);
      }
      await this.teardown();
    })();
    return this.closing;
  }

  private async teardown(): Promise<void> {
    for (const q of this.queues) q.close();
    this.queues = [];
    // Answers still owed are dropped; their deadlines would only keep the process alive.
    for (const s of this.slots) s.failfast?.clear();
    try {
      await deleteDevice(this.info.id);
    } catch (e) {
      log.warn(`${this.device}: DEL_DEV: ${(e as Error).message}`);
    }
  }
}

/** The kernel's view of a device for `wsblk list` (state and the pid serving its queues). */
export async function kernelState(id: number): Promise<{ state: string; daemonPid: number } | undefined> {
  try {
    const i = await getDeviceInfo(id, { timeoutMs: 2000 });
    return { state: i.state.toUpperCase(), daemonPid: i.daemonPid };
  } catch {
    return undefined;
  }
}
