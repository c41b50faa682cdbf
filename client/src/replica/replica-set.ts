import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Errno, FLAG_FUA, Op, bufferPool, errnoName, logger } from '@wsblk/shared';
import type { BlockTarget, DiskInfo, IoCallback, IoRequest } from '../target.js';
import { ownPayload } from '../transport/inflight.js';
import { NoAnswer, deadline } from './deadline.js';
import { DirtyMap, regionShiftFor } from './dirty-map.js';
import type { ReplicaLink } from './link.js';
import { AttachRefused, decideMembership, type SetRecord } from './membership.js';
import { RangeLock, type RangeHold } from './range-lock.js';
import { Resync, ResyncError } from './resync.js';

const log = logger('replica');

export type ReplicaState = 'in-sync' | 'resyncing' | 'ejected' | 'unreachable';

export interface ReplicaStatus {
  url: string;
  state: ReplicaState;
  connected: boolean;
  /** Requests sent and not answered. */
  outstanding: number;
  /** While resyncing: percent done, bytes copied, and whether it compares checksums. */
  resync?: { percent: number; bytesCopied: number; compare: boolean };
  /** Why it was last ejected. */
  reason?: string;
}

export interface ReplicaSetStatus {
  setId: string;
  epoch: number;
  inSync: number;
  replicas: ReplicaStatus[];
}

export interface ReplicaSetOptions {
  /** Writes need this many in-sync replicas (default 1). */
  minInSync?: number;
  /** With fewer: writes wait for a replica to come back ('wait', default) or fail with EIO. */
  onNoQuorum?: 'wait' | 'error';
  /** A replica that leaves a request unanswered this long is ejected (ms, default 8000). */
  replicaTimeoutMs?: number;
  /**
   * The last in-sync replica is never ejected (it holds the only good copy): in error mode its
   * requests fail with EIO after this long (ms, default 4x replicaTimeoutMs); in wait mode they wait.
   */
  lastReplicaTimeoutMs?: number;
  /** Resync copies at most this many bytes per second (default 100 MiB/s; 0: no limit). */
  resyncRate?: number;
  /** Where the dirty map of replica `id` lives (a file in the device's run directory). */
  mapPath: (id: string) => string;
  /** Trust this replica when the records do not settle which are in sync. */
  forceInSync?: string;
  /** A new set's replicas are identical already (new, all-zero exports): all in sync at once, nothing compared. */
  assumeClean?: boolean;
  /** The record this client stored last (a restarted daemon): trusted if it is still the newest. */
  known?: SetRecord;
}

type Mode = 'in-sync' | 'resyncing' | 'out';

class Replica {
  mode: Mode = 'out';
  outstanding = 0;
  map: DirtyMap | null = null;
  resync: Resync | null = null;
  compare = false;
  reason = '';
  /** Its record is being read before a resync (see startResync). */
  checking = false;
  /** When its oldest unanswered request was sent (for the replica timeout). */
  constructor(readonly link: ReplicaLink) {}
}

interface SetOp {
  req: IoRequest;
  cb: IoCallback;
  /** When it was sent to the replicas (ms, monotonic). */
  sentAt: number;
  /** Replicas that still owe an answer. */
  waiting: Replica[];
  /** In-sync replicas that answered with success. */
  okInSync: number;
  /** Replicas that answered with an error (made on the first one: most writes have none), and the first error. */
  failed: Replica[] | undefined;
  error: number;
  hold: RangeHold | null;
  /** WRITE: the copy of the data every replica is sent (ownPayload), released when it completes. */
  payload?: Buffer;
  /** READ: the replica asked now, and those that failed it. */
  reader?: Replica;
  tried?: Replica[];
  /** FLUSH: the unflushed regions it makes durable (ReplicaSet.unflushed when it was sent). */
  covers?: Set<number>;
  coversAll?: boolean;
}

/** Unflushed regions tracked one by one at most; past this, every region counts as unflushed. */
const UNFLUSHED_MAX = 1 << 16;

/** A write whose data a replica may hold only in a volatile cache once it has answered. */
const isCachedWrite = (req: IoRequest) => isWrite(req.op) && (req.flags & FLAG_FUA) === 0;

const isWrite = (op: Op) => op === Op.Write || op === Op.Discard || op === Op.WriteZeroes;

/**
 * One device over several replicas; the client coordinates, the servers stay simple (as
 * Longhorn's engine and Mayastor's nexus do). Writes and flushes go to every in-sync and
 * resyncing replica and complete when each has answered or been ejected; overlapping writes are
 * ordered by a range lock so every replica applies them in the same order. Reads go to one
 * in-sync replica, the least busy at the start of each burst. An ejection is persisted (a new epoch on the remaining
 * in-sync replicas) before any write completes after it. An ejected replica that comes back is
 * resynced (its dirty map, or checksums where no map was kept) and then rejoins.
 */
export class ReplicaSet extends EventEmitter implements BlockTarget {
  info: DiskInfo;
  private readonly replicas: Replica[];
  private readonly lock = new RangeLock();
  private readonly ops = new Set<SetOp>();
  /** Requests that wait for enough in-sync replicas. */
  private blocked: Array<[IoRequest, IoCallback]> = [];
  /** A membership change being persisted; completions of writes wait for it. */
  private changing: Promise<void> | null = null;
  private deferred: Array<[SetOp, number]> = [];
  private setId: string;
  private epoch: number;
  private readonly timer: NodeJS.Timeout;
  private rr = 0;
  /**
   * Regions written since the last FLUSH that every in-sync replica completed. A replica that
   * loses power (the lab's crash) loses what it had not flushed, though it had answered it: so
   * when a replica is ejected these regions join its dirty map, and its resync copies them too.
   * Marked when a write is sent (a replica may answer, then crash before the others answer); a
   * FLUSH takes what was marked when it was sent and gives it back if it fails. Past
   * UNFLUSHED_MAX regions every region counts (unflushedAll: an ejected replica is compared).
   */
  private unflushed = new Set<number>();
  private unflushedAll = false;
  private readonly regionSize: number;
  /** Reads of this burst go here (burstReader). */
  private burst: Replica | undefined;
  private burstArmed = false;
  private closed = false;
  private readonly o: Required<Omit<ReplicaSetOptions, 'forceInSync' | 'known' | 'assumeClean'>>;

  private constructor(links: ReplicaLink[], opts: ReplicaSetOptions, setId: string, epoch: number) {
    super();
    const timeout = opts.replicaTimeoutMs ?? 8000;
    this.o = {
      minInSync: opts.minInSync ?? 1,
      onNoQuorum: opts.onNoQuorum ?? 'wait',
      replicaTimeoutMs: timeout,
      lastReplicaTimeoutMs: opts.lastReplicaTimeoutMs ?? 4 * timeout,
      resyncRate: opts.resyncRate ?? 100 << 20,
      mapPath: opts.mapPath,
    };
    this.replicas = links.map((l) => new Replica(l));
    this.info = combinedInfo(links);
    this.regionSize = 2 ** regionShiftFor(this.info.size);
    this.setId = setId;
    this.epoch = epoch;
    // Not unref'd: requests waiting on a silent replica must still be swept; close() clears it.
    this.timer = setInterval(() => this.sweep(), Math.max(50, Math.min(1000, timeout / 4)));
    for (const r of this.replicas) r.link.onState((up, sessionLost) => this.onLinkState(r, up, sessionLost === true));
  }

  /**
   * Attaches: reads every reachable replica's record, decides which are in sync (refusing when
   * that is ambiguous), persists the set's record, and starts resyncing stale replicas.
   * `links` must be connected or known unreachable (their readMeta rejects).
   */
  static async open(links: ReplicaLink[], opts: ReplicaSetOptions): Promise<ReplicaSet> {
    if (links.length === 0) throw new AttachRefused('a replica set needs at least one replica');
    const ids = links.map((l) => l.id);
    const dup = ids.find((id, i) => ids.indexOf(id) !== i);
    if (dup) throw new AttachRefused(`replica ${dup} is given twice`);
    const records = new Map<string, SetRecord | null>();
    await Promise.all(links.map(async (l) => {
      try {
        records.set(l.id, await l.readMeta());
      } catch (e) {
        log.warn(`replica ${l.id} is unreachable at attach: ${(e as Error).message}`);
      }
    }));
    const reachable = links.filter((l) => records.has(l.id));
    const sizes = new Set(reachable.map((l) => l.info.size));
    if (sizes.size > 1) {
      throw new AttachRefused(`the replicas differ in size: ${reachable.map((l) => `${l.id} ${l.info.size} bytes`).join(', ')}`);
    }
    const decided = decideMembership(ids, records, () => randomBytes(8).toString('hex'), opts.forceInSync, opts.known, opts.assumeClean === true);
    if (opts.assumeClean && !decided.created) {
      log.warn(`--assume-clean ignored: the replicas already form set ${decided.setId.slice(0, 8)} (epoch ${decided.epoch}), whose records say which are in sync`);
    } else if (opts.assumeClean) {
      log.info(`new replica set: --assume-clean, every replica in sync without a compare (wsblk verify checks that they are identical)`);
    }
    const set = new ReplicaSet(links, opts, decided.setId, decided.epoch);
    for (const r of set.replicas) {
      const id = r.link.id;
      if (decided.inSync.includes(id)) {
        r.mode = 'in-sync';
      } else {
        r.reason = records.has(id) ? (decided.created ? 'new replica set' : 'stale at attach') : 'unreachable at attach';
        set.markOut(r, false);
      }
    }
    // Every attach bumps the epoch: a dirty map saved by an earlier client is trusted only if
    // nobody attached since (markOut checked it against the epoch just read).
    await set.persist('attach', 5);
    log.info(`replica set ${set.setId.slice(0, 8)} epoch ${set.epoch}: in sync ${decided.inSync.join(', ')}`
      + `${decided.stale.length ? `; to resync: ${decided.stale.join(', ')}` : ''}`);
    for (const r of set.replicas) if (r.mode === 'out' && r.link.connected) set.startResync(r);
    set.flushEarlierWrites();
    return set;
  }

  /**
   * What an earlier daemon wrote may be unflushed on the servers, and is in no list of ours:
   * until a first FLUSH has made it durable everywhere, every region counts as unflushed (a
   * replica ejected meanwhile is compared in full).
   */
  private flushEarlierWrites(): void {
    if (!this.info.flush || this.info.readOnly) return;
    this.everyRegionUnflushed();
    this.submit({ op: Op.Flush, offset: 0, length: 0, flags: 0 }, (status) => {
      if (status !== 0) log.warn(`the first flush after attach failed (${errnoName(status)}); a replica ejected before the next one is compared in full`);
    });
  }

  get status(): ReplicaSetStatus {
    return {
      setId: this.setId,
      epoch: this.epoch,
      inSync: this.count('in-sync'),
      replicas: this.replicas.map((r) => ({
        url: r.link.id,
        state: r.mode === 'out' ? (r.link.connected ? 'ejected' : 'unreachable') : r.mode,
        connected: r.link.connected,
        outstanding: r.outstanding,
        ...(r.resync && r.mode === 'resyncing' ? { resync: { percent: r.resync.percent, bytesCopied: r.resync.bytesCopied, compare: r.compare } } : {}),
        ...(r.reason && r.mode !== 'in-sync' ? { reason: r.reason } : {}),
      })),
    };
  }

  /** The record as this client stored it last (for a restarted daemon: see ReplicaSetOptions.known). */
  get record(): SetRecord {
    return { setId: this.setId, epoch: this.epoch, inSync: this.replicas.filter((r) => r.mode === 'in-sync').map((r) => r.link.id) };
  }

  /** Some in-sync replica is connected (reads and writes can be answered now). */
  get connected(): boolean {
    return this.anyInSyncConnected();
  }

  /** Requests waiting for replicas. */
  get inflight(): number {
    return this.ops.size + this.blocked.length;
  }

  /**
   * Adds a replica (`wsblk replica add`): it takes writes at once, is compared region by region
   * with an in-sync replica and copied where it differs, then joins the in-sync set.
   */
  addReplica(link: ReplicaLink): void {
    if (this.closed) throw new Error('the device is stopping');
    if (this.replicas.some((r) => r.link.id === link.id)) throw new Error(`${link.id} is a replica already`);
    if (link.info && link.info.size !== this.info.size) throw new Error(`${link.id} is ${link.info.size} bytes, the set ${this.info.size}`);
    const r = new Replica(link);
    r.reason = 'added';
    this.markOut(r, false);
    this.replicas.push(r);
    link.onState((up, sessionLost) => this.onLinkState(r, up, sessionLost === true));
    log.info(`replica ${link.id} added`);
    this.emit('state', this.status);
    if (link.connected) this.startResync(r);
  }

  /**
   * Removes a replica (`wsblk replica remove`). The last in-sync replica cannot be removed. If it
   * was in sync, the new membership is stored on the rest before any later write completes.
   */
  async removeReplica(id: string): Promise<void> {
    const r = this.replicas.find((x) => x.link.id === id);
    if (!r) throw new Error(`${id} is not a replica of this device (replicas: ${this.replicas.map((x) => x.link.id).join(', ')})`);
    if (r.mode === 'in-sync' && this.count('in-sync') === 1) {
      throw new Error(`${id} is the only in-sync replica: add another and wait until it is in sync first`);
    }
    this.eject(r, 'removed');
    this.replicas.splice(this.replicas.indexOf(r), 1);
    await this.changing;
    const map = r.map;
    r.map = null;
    await map?.remove();
    await r.link.close();
    log.info(`replica ${id} removed`);
    this.emit('state', this.status);
  }

  submit(req: IoRequest, cb: IoCallback): void {
    if (this.closed) return void process.nextTick(cb, Errno.ESHUTDOWN);
    const writes = isWrite(req.op) || req.op === Op.Flush;
    const need = writes ? this.o.minInSync : 1;
    if (this.count('in-sync') < need || (this.o.onNoQuorum === 'error' && !this.anyInSyncConnected())) {
      if (this.o.onNoQuorum === 'error') return void process.nextTick(cb, Errno.EIO);
      this.blocked.push([req, cb]);
      return;
    }
    const op: SetOp = { req, cb, sentAt: 0, waiting: [], okInSync: 0, failed: undefined, error: 0, hold: null };
    if (req.op === Op.Read) return this.sendRead(op);
    if (req.op === Op.Flush) return this.fanOut(op);
    const r = this.lock.acquire(req.offset, req.length, () => this.markThenFanOut(op));
    op.hold = r.hold;
    if (r.now) this.markThenFanOut(op);
  }

  // --- writes and flushes --------------------------------------------------------------------

  /** Records the write in the maps of replicas that are out, then sends it. */
  private markThenFanOut(op: SetOp): void {
    let saves: Promise<void>[] | undefined;
    for (const r of this.replicas) {
      if (r.mode !== 'out' || !r.map) continue;
      const p = r.map.mark(op.req.offset, op.req.length);
      if (p) (saves ??= []).push(p);
    }
    if (!saves) return this.fanOut(op);
    Promise.all(saves).then(() => this.fanOut(op), (e: Error) => {
      // A map that cannot be saved cannot be trusted: resync will compare checksums instead.
      log.error(`saving a dirty map failed (${e.message}); those replicas will be compared in full`);
      for (const r of this.replicas) if (r.mode === 'out') r.compare = true;
      this.fanOut(op);
    });
  }

  private fanOut(op: SetOp): void {
    op.sentAt = performance.now();
    if (isCachedWrite(op.req)) this.markUnflushed(op.req);
    else if (op.req.op === Op.Flush) this.takeUnflushed(op);
    this.ops.add(op);
    for (const r of this.replicas) if (r.mode !== 'out') op.waiting.push(r);
    // One copy of a write's data for every replica (each transport would copy it otherwise).
    let req = op.req;
    if (req.payload && op.waiting.length > 1) {
      op.payload = ownPayload(req.payload);
      req = { op: req.op, offset: req.offset, length: req.length, flags: req.flags, payload: op.payload };
    }
    for (const r of op.waiting.slice()) {
      r.outstanding++;
      r.link.submit(req, (status) => this.answered(op, r, status));
    }
    if (op.waiting.length === 0) this.settle(op);
  }

  private answered(op: SetOp, r: Replica, status: number): void {
    r.outstanding--;
    const i = op.waiting.indexOf(r);
    if (i < 0) return; // ejected meanwhile: its answer no longer counts
    op.waiting.splice(i, 1);
    if (status === 0) {
      if (r.mode === 'in-sync') op.okInSync++;
    } else {
      (op.failed ??= []).push(r);
      op.error ||= status;
    }
    if (op.waiting.length === 0) this.settle(op);
  }

  /** Every replica asked has answered (or was ejected). */
  private settle(op: SetOp): void {
    if (op.okInSync > 0) {
      // Some in-sync replica has the data: the ones that failed it no longer do.
      for (const r of op.failed ?? []) this.eject(r, `${Op[op.req.op]} ${op.req.offset}+${op.req.length} failed with errno ${op.error}`);
      this.finish(op, 0);
    } else {
      // Every in-sync replica refused it (a bad request, or no in-sync replica left to ask).
      this.finish(op, op.error || Errno.EIO);
    }
  }

  /** Completes a request once no membership change is being persisted. */
  private finish(op: SetOp, status: number, data?: Buffer): void {
    if (this.changing && op.req.op !== Op.Read) {
      this.deferred.push([op, status]);
      return;
    }
    this.ops.delete(op);
    if (op.covers) {
      // A flush that failed made nothing durable: its regions are unflushed still.
      if (status !== 0) {
        if (op.coversAll) this.everyRegionUnflushed();
        else for (const r of op.covers) this.addUnflushed(r);
      }
      op.covers = undefined;
    }
    if (op.hold) this.lock.release(op.hold);
    op.hold = null;
    if (op.payload) bufferPool.release(op.payload);
    op.payload = undefined;
    op.cb(status, data);
  }

  // --- reads -----------------------------------------------------------------------------------

  private sendRead(op: SetOp): void {
    const r = op.tried ? this.pickReader(op.tried) : this.burstReader();
    if (!r) {
      // Nothing left to ask: the error of the last replica tried, or wait for one to return.
      if (op.tried?.length || this.o.onNoQuorum === 'error') return this.finish(op, op.error || Errno.EIO);
      this.ops.delete(op);
      this.blocked.push([op.req, op.cb]);
      return;
    }
    op.reader = r;
    op.sentAt = performance.now();
    this.ops.add(op);
    r.outstanding++;
    r.link.submit(op.req, (status, data) => {
      r.outstanding--;
      if (op.reader !== r) return; // ejected and sent elsewhere meanwhile
      op.reader = undefined;
      if (status === 0) return this.finish(op, 0, data);
      op.error = status;
      (op.tried ??= []).push(r);
      // Another in-sync replica may have it: ask it, and eject the one that failed.
      if (this.pickReader(op.tried)) this.eject(r, `READ ${op.req.offset}+${op.req.length} failed with errno ${status}`);
      this.sendRead(op);
    });
  }

  /**
   * The replica for a read of the current burst (the requests a frontend submits in one run of
   * the event loop): one for the whole burst, so its transport sends them in one write and its
   * server answers them in one (spread per request, the three servers each saw a third of every
   * burst and the set paid three system calls for each). The next burst picks again.
   */
  private burstReader(): Replica | undefined {
    const r = this.burst;
    if (r && r.mode === 'in-sync' && r.link.connected) return r;
    this.burst = this.pickReader();
    if (!this.burstArmed) {
      this.burstArmed = true;
      queueMicrotask(this.endBurst);
    }
    return this.burst;
  }

  private readonly endBurst = (): void => {
    this.burst = undefined;
    this.burstArmed = false;
  };

  /** The in-sync replica with the fewest requests outstanding (connected ones first). */
  private pickReader(exclude?: Replica[]): Replica | undefined {
    let best: Replica | undefined;
    const n = this.replicas.length;
    for (let k = 0; k < n; k++) {
      const r = this.replicas[(this.rr + k) % n]!;
      if (r.mode !== 'in-sync' || exclude?.includes(r)) continue;
      if (!best || (r.link.connected && !best.link.connected)
        || (r.link.connected === best.link.connected && r.outstanding < best.outstanding)) best = r;
    }
    this.rr = (this.rr + 1) % n;
    return best;
  }

  // --- failure detection -------------------------------------------------------------------

  /** Ejects replicas that left a request unanswered for the replica timeout. */
  private sweep(): void {
    const now = performance.now();
    const late = new Set<Replica>();
    let lastLate = false;
    for (const op of this.ops) {
      const age = now - op.sentAt;
      if (age < this.o.replicaTimeoutMs) continue;
      if (op.reader) {
        late.add(op.reader);
        continue;
      }
      for (const r of op.waiting) late.add(r);
      if (age >= this.o.lastReplicaTimeoutMs) lastLate = true;
    }
    if (late.size === 0) return;
    // Never eject every in-sync replica: while all of them are late, the client host (or all
    // servers) is slow, and the last copy must stay (longhorn#8711).
    const inSync = this.replicas.filter((r) => r.mode === 'in-sync');
    const healthy = inSync.filter((r) => !late.has(r));
    for (const r of late) {
      if (r.mode === 'in-sync' && healthy.length === 0) continue;
      this.eject(r, `no answer for ${this.o.replicaTimeoutMs / 1000} s`);
    }
    if (healthy.length === 0 && lastLate && this.o.onNoQuorum === 'error') this.failLate(now);
  }

  /** Error mode, every in-sync replica silent past the last-replica timeout: fail what waits. */
  private failLate(now: number): void {
    for (const op of [...this.ops]) {
      if (now - op.sentAt < this.o.lastReplicaTimeoutMs) continue;
      log.warn(`${Op[op.req.op]} ${op.req.offset}+${op.req.length}: no in-sync replica answered for ${this.o.lastReplicaTimeoutMs / 1000} s; failing it`);
      op.waiting = [];
      op.reader = undefined;
      this.finish(op, Errno.EIO);
    }
  }

  // --- membership ------------------------------------------------------------------------------

  /**
   * Takes a replica out: later writes are recorded in its dirty map, what it holds is dropped
   * (never sent again), and if it was in sync, the new membership is persisted on the remaining
   * in-sync replicas before any write completes.
   */
  private eject(r: Replica, reason: string): void {
    if (r.mode === 'out') return;
    const wasInSync = r.mode === 'in-sync';
    log.warn(`ejecting replica ${r.link.id} (${r.mode}): ${reason}`);
    r.reason = reason;
    this.stopResync(r);
    this.markOut(r, true);
    // Writes in flight may or may not have reached it: their regions are dirty too.
    for (const op of this.ops) {
      if (isWrite(op.req.op) && op.waiting.includes(r)) void r.map?.mark(op.req.offset, op.req.length);
    }
    this.markUnflushedIn(r);
    const settled: SetOp[] = [];
    const reads: SetOp[] = [];
    for (const op of this.ops) {
      if (op.reader === r) {
        op.reader = undefined;
        (op.tried ??= []).push(r);
        reads.push(op);
        continue;
      }
      const i = op.waiting.indexOf(r);
      if (i < 0) continue;
      op.waiting.splice(i, 1);
      if (op.waiting.length === 0) settled.push(op);
    }
    r.link.abandon(Errno.EIO);
    if (wasInSync) this.changeMembership(`ejected ${r.link.id}`);
    for (const op of settled) this.settle(op);
    for (const op of reads) this.sendRead(op);
    this.emit('state', this.status);
  }

  /**
   * Marks a replica out, with a dirty map of what it misses. `inSyncUntilNow`: it was in sync
   * until this moment (an ejection), so an empty map tracks exactly what it misses from now.
   * Otherwise a map saved earlier for this set, at the current epoch, still says what it
   * missed; without one, everything is compared by checksum.
   */
  private markOut(r: Replica, inSyncUntilNow: boolean): void {
    r.mode = 'out';
    if (r.map) return;
    const path = this.o.mapPath(r.link.id);
    const owner = `${this.setId}/${r.link.id}`;
    const saved = inSyncUntilNow ? null : DirtyMap.load(path, this.info.size, owner);
    if (saved && saved.epoch === this.epoch) {
      r.map = saved;
      r.compare = false;
      return;
    }
    r.map = DirtyMap.fresh(path, this.info.size, owner, !inSyncUntilNow);
    r.map.epoch = this.epoch;
    r.compare = !inSyncUntilNow;
    void r.map.flush();
  }

  /** Persists the in-sync list under a new epoch; writes complete only after it is saved. */
  private changeMembership(why: string, joining?: Replica): void {
    const prev = this.changing ?? Promise.resolve();
    const p: Promise<void> = prev.then(() => this.persist(why, Infinity, joining)).finally(() => {
      if (this.changing !== p) return;
      this.changing = null;
      const d = this.deferred;
      this.deferred = [];
      for (const [op, status] of d) this.finish(op, status);
    });
    this.changing = p;
  }

  /**
   * Writes {setId, epoch + 1, in-sync ids} to every in-sync replica. One that cannot take it is
   * ejected and the record written again without it; with none able to, it retries.
   */
  private async persist(why: string, giveUpAfter = Infinity, joining?: Replica): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      if (joining && joining.mode !== 'resyncing') joining = undefined; // ejected meanwhile
      const members = this.replicas.filter((r) => r.mode === 'in-sync' || r === joining);
      const rec: SetRecord = { setId: this.setId, epoch: this.epoch + 1, inSync: members.map((r) => r.link.id) };
      const results = await Promise.allSettled(members.map((r) => deadline(r.link.writeMeta(rec), this.o.replicaTimeoutMs)));
      const failed = members.filter((_, i) => results[i]!.status === 'rejected');
      if (failed.length < members.length) {
        this.epoch = rec.epoch;
        if (failed.length === 0) {
          if (joining) joining.mode = 'in-sync';
          log.info(`replica set epoch ${this.epoch} (${why}): in sync ${rec.inSync.join(', ')}`);
          // Maps carry the epoch they are valid at (see markOut).
          for (const r of this.replicas) {
            if (!r.map) continue;
            r.map.epoch = this.epoch;
            await r.map.flush();
          }
          this.emit('state', this.status);
          return;
        }
        for (const r of failed) {
          const err = (results[members.indexOf(r)] as PromiseRejectedResult).reason as Error;
          log.warn(`replica ${r.link.id} could not store epoch ${rec.epoch}: ${err.message}`);
          r.reason = `could not store epoch ${rec.epoch}: ${err.message}`;
          this.stopResync(r);
          this.markOut(r, true);
          r.link.abandon(Errno.EIO);
        }
        why = `${why}; ejected ${failed.map((r) => r.link.id).join(', ')}`;
        continue;
      }
      if (attempt + 1 >= giveUpAfter) {
        throw new AttachRefused(`no in-sync replica could store the set's epoch ${rec.epoch}: ${results.map((x) => (x as PromiseRejectedResult).reason?.message).join('; ')}`);
      }
      log.warn(`no in-sync replica could store epoch ${rec.epoch} (${why}); retrying`);
      await new Promise((res) => setTimeout(res, Math.min(5000, 200 * 2 ** attempt)));
    }
  }

  // --- resync --------------------------------------------------------------------------------

  private onLinkState(r: Replica, up: boolean, sessionLost = false): void {
    if (this.closed || !this.replicas.includes(r)) return; // removed
    if (up && sessionLost && r.mode !== 'out' && !(r.mode === 'in-sync' && this.count('in-sync') === 1)) {
      // Its server restarted before the replica timeout: it answered writes it may not have
      // flushed, and a restart after a power cut (or a memory export) has lost them. Out it
      // goes, with those regions in its map, and the resync that follows checks its record.
      // (The last in-sync replica stays: it is the data, as a lone disk's is after a power cut.)
      this.eject(r, 'its server restarted (our session was unknown to it): writes it had not flushed may be lost');
      // Its link reconnects (the ejection dropped the connection) and that starts the resync;
      // should it stay up instead, this does.
      this.resyncLater(r, 1000);
      return;
    }
    this.emit('state', this.status);
    if (up && r.mode === 'out' && !r.resync) this.startResync(r);
    if (up) this.unblock();
  }

  /**
   * Before a resync from a dirty map: the replica must still hold this set's record. One that
   * comes back without it (a memory export after a restart, a replaced disk) lost its data, not
   * just the writes in the map: every region is compared instead.
   */
  private startResync(r: Replica): void {
    if (this.closed || r.resync || r.checking || r.mode !== 'out' || !r.map) return;
    if (this.count('in-sync') === 0) return;
    if (r.compare) return this.resync(r);
    r.checking = true;
    // A link that reconnected into a black hole is up and silent: without a limit its record
    // would be awaited forever and the replica never resynced once the path heals.
    deadline(r.link.readMeta(), this.o.replicaTimeoutMs).then((rec) => {
      r.checking = false;
      if (this.closed || !this.replicas.includes(r) || r.mode !== 'out' || !r.map) return; // removed or ejected meanwhile
      if (!rec || rec.setId !== this.setId) {
        log.warn(`replica ${r.link.id} came back without this set's record (${rec ? `set ${rec.setId.slice(0, 8)}` : 'none'}): its data is gone; comparing every region`);
        r.map = DirtyMap.fresh(this.o.mapPath(r.link.id), this.info.size, `${this.setId}/${r.link.id}`, true);
        r.map.epoch = this.epoch;
        r.compare = true;
        void r.map.flush();
      }
      this.resync(r);
    }, (e: Error) => {
      r.checking = false;
      log.warn(`replica ${r.link.id}: reading its record failed (${e.message}); trying again`);
      // A silent connection is dropped (what it holds fails): the next try starts on a new one.
      if (e instanceof NoAnswer) r.link.abandon(Errno.EIO);
      this.resyncLater(r, 1000);
    });
  }

  /** Rejoins a replica write-only and copies what it missed; in sync at the end. */
  private resync(r: Replica): void {
    if (this.closed || r.resync || r.mode !== 'out' || !r.map) return;
    if (this.count('in-sync') === 0) return;
    r.mode = 'resyncing';
    const resync = new Resync({
      lock: this.lock, size: this.info.size, maxPayload: Math.min(this.info.maxPayload, 1 << 20),
      source: () => this.pickReader()?.link ?? null,
      target: r.link, map: r.map, compare: r.compare, rate: this.o.resyncRate,
      timeoutMs: this.o.replicaTimeoutMs, log: (m) => log.info(m),
    });
    r.resync = resync;
    log.info(`resync of ${r.link.id} starts: ${r.compare ? `comparing ${resync.total} regions by checksum` : `${resync.total} regions written while it was out or unflushed when it left`}`
      + ` (${r.map.regionSize >> 10} KiB each, rate ${this.o.resyncRate ? `${Math.round(this.o.resyncRate / 1048576)} MiB/s` : 'unlimited'})`);
    this.emit('state', this.status);
    resync.run().then(async () => {
      if (r.resync !== resync || r.mode !== 'resyncing') return;
      // In sync once the new membership is stored; until then it keeps taking writes only.
      this.changeMembership(`${r.link.id} resynced`, r);
      await this.changing;
      r.resync = null;
      if ((r.mode as Mode) === 'in-sync') {
        r.reason = '';
        const map = r.map;
        r.map = null;
        await map?.remove();
        log.info(`resync of ${r.link.id} done: ${resync.bytesCopied} bytes copied; it is in sync (epoch ${this.epoch})`);
      }
      this.emit('state', this.status);
      this.unblock();
    }, (e: Error) => {
      if (r.resync !== resync) return;
      r.resync = null;
      if (this.closed || resync.isStopped) return;
      const blame = e instanceof ResyncError ? e.blame : 'none';
      log.warn(`resync of ${r.link.id} stopped at ${resync.percent}%: ${e.message}`);
      if (blame === 'source') {
        // The source failed: go back out and try again shortly (from another in-sync replica).
        r.mode = 'out';
        setTimeout(() => this.startResync(r), 1000).unref();
      } else {
        this.eject(r, `resync failed: ${e.message}`);
        this.resyncLater(r, 2000);
      }
    });
  }

  /** Tries the replica's resync again in `ms`, if its link is up then. */
  private resyncLater(r: Replica, ms: number): void {
    setTimeout(() => { if (r.link.connected) this.startResync(r); }, ms).unref();
  }

  private stopResync(r: Replica): void {
    r.resync?.stop();
    r.resync = null;
  }

  // --- what no flush has made durable yet -------------------------------------------------------

  private markUnflushed(req: IoRequest): void {
    if (this.unflushedAll || req.length <= 0) return;
    const rs = this.regionSize;
    const last = Math.floor((req.offset + req.length - 1) / rs);
    for (let r = Math.floor(req.offset / rs); r <= last; r++) this.addUnflushed(r);
  }

  private addUnflushed(region: number): void {
    if (this.unflushedAll) return;
    this.unflushed.add(region);
    if (this.unflushed.size > UNFLUSHED_MAX) this.everyRegionUnflushed();
  }

  private everyRegionUnflushed(): void {
    this.unflushedAll = true;
    this.unflushed.clear();
  }

  /**
   * A FLUSH being sent makes durable what was written before it, not the writes still in flight
   * (their regions stay unflushed after it).
   */
  private takeUnflushed(flush: SetOp): void {
    flush.covers = this.unflushed;
    flush.coversAll = this.unflushedAll;
    this.unflushed = new Set();
    this.unflushedAll = false;
    for (const op of this.ops) if (isCachedWrite(op.req)) this.markUnflushed(op.req);
  }

  /** An ejected replica may have lost, with its power, everything no flush has covered: dirty. */
  private markUnflushedIn(r: Replica): void {
    const map = r.map;
    if (!map) return;
    let all = this.unflushedAll;
    const sets = [this.unflushed];
    for (const op of this.ops) {
      if (!op.covers) continue;
      sets.push(op.covers);
      all ||= op.coversAll === true;
    }
    if (all) {
      // Too much to list: every region is compared by checksum, and copied where it differs.
      void map.mark(0, this.info.size);
      r.compare = true;
      return;
    }
    const rs = this.regionSize;
    for (const set of sets) for (const region of set) void map.mark(region * rs, rs);
  }

  // --- helpers -------------------------------------------------------------------------------

  private count(mode: Mode): number {
    let n = 0;
    for (const r of this.replicas) if (r.mode === mode) n++;
    return n;
  }

  private anyInSyncConnected(): boolean {
    return this.replicas.some((r) => r.mode === 'in-sync' && r.link.connected);
  }

  /** Requests that waited for enough in-sync replicas go now, if they can. */
  private unblock(): void {
    if (this.blocked.length === 0) return;
    const b = this.blocked;
    this.blocked = [];
    for (const [req, cb] of b) this.submit(req, cb);
  }

  /** Stops: outstanding requests finish or fail, resyncs stop, the links close. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [, cb] of this.blocked) cb(Errno.ESHUTDOWN);
    this.blocked = [];
    // Resyncs stop where they are, keeping (flushed on the target, saved in the map) what they copied.
    await Promise.all(this.replicas.map((r) => {
      const rs = r.resync;
      r.resync = null;
      return rs?.stopAndKeep();
    }));
    await this.changing;
    clearInterval(this.timer);
    for (const r of this.replicas) await r.map?.flush();
    await Promise.all(this.replicas.map((r) => r.link.close()));
  }
}

/** What the set offers: every replica's capability, the smallest payload limit. */
function combinedInfo(links: ReplicaLink[]): DiskInfo {
  const infos = links.map((l) => l.info).filter((i) => i !== undefined);
  const first = infos[0]!;
  return {
    exportName: first.exportName,
    size: first.size,
    blockSize: Math.max(...infos.map((i) => i.blockSize)),
    readOnly: infos.some((i) => i.readOnly),
    flush: infos.every((i) => i.flush),
    fua: infos.every((i) => i.fua),
    discard: infos.every((i) => i.discard),
    writeZeroes: infos.every((i) => i.writeZeroes),
    maxPayload: Math.min(...infos.map((i) => i.maxPayload)),
  };
}
