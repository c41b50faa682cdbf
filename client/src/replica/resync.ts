import { CHECKSUM_CHUNK, CHECKSUM_DIGEST, Op } from '@wsblk/shared';
import type { IoRequest } from '../target.js';
import { deadline } from './deadline.js';
import type { DirtyMap } from './dirty-map.js';
import type { ReplicaLink } from './link.js';
import type { RangeLock } from './range-lock.js';

/** Bytes compared per pair of CHECKSUM requests in compare mode. */
const COMPARE_BATCH_BYTES = 16 << 20;
/** Regions copied at once. */
const WINDOW = 4;

export interface ResyncOptions {
  lock: RangeLock;
  /** Disk size in bytes. */
  size: number;
  /** Largest READ/WRITE one request may carry (both links accept it). */
  maxPayload: number;
  /** An in-sync replica to copy from, asked again for every region (null: none now). */
  source: () => ReplicaLink | null;
  target: ReplicaLink;
  /** The regions to bring up to date; its resync position is where this run starts. */
  map: DirtyMap;
  /** Compare checksums first and copy only regions that differ (no map of the outage was kept). */
  compare: boolean;
  /** Bytes per second copied (and compared), at most; 0: no limit. */
  rate: number;
  /** A region copy (or compare) that takes longer than this gives up: it holds writes to that region. */
  timeoutMs: number;
  /** Saves the position at least this often (ms). */
  saveEveryMs?: number;
  log: (msg: string) => void;
}

export class ResyncError extends Error {
  override name = 'ResyncError';
  constructor(message: string, readonly blame: 'source' | 'target' | 'none') {
    super(message);
  }
}

/**
 * Brings one replica up to date, region by region, from an in-sync one. Each region is copied
 * under the set's range lock, so a write to that region waits only for its copy, and the
 * region's copy reaches the target before any later write to it. Resumable: the position and
 * the regions still to copy live in the dirty map, saved as it goes.
 */
export class Resync {
  private stopped = false;
  private keepOnStop = false;
  private running: Promise<void> | null = null;
  /** Regions done in this run, and to do in all (for progress). */
  done = 0;
  readonly total: number;
  bytesCopied = 0;
  regionsCompared = 0;
  private readonly startedAt = Date.now();

  constructor(private readonly o: ResyncOptions) {
    this.total = o.compare ? o.map.regions - o.map.resyncPosition : o.map.dirtyRegions;
  }

  get percent(): number {
    return this.total === 0 ? 100 : Math.min(100, Math.floor((this.done / this.total) * 1000) / 10);
  }

  stop(): void {
    this.stopped = true;
  }

  /**
   * Stops, and keeps what was copied: the copies under way finish, the target flushes them, and
   * the map is saved with them done (a daemon that stops resumes there). Resolves once run() has.
   * A target that is not connected keeps nothing (its flush would not be answered).
   */
  stopAndKeep(): Promise<void> {
    this.keepOnStop = this.o.target.connected;
    this.stop();
    return (this.running ?? Promise.resolve()).catch(() => {});
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Runs to the end. Rejects with a ResyncError when a replica fails, or when stopped. */
  run(): Promise<void> {
    this.running ??= this.runAll();
    return this.running;
  }

  private async runAll(): Promise<void> {
    const { map } = this.o;
    const rs = map.regionSize;
    let lastSave = Date.now();
    const first = this.o.compare ? map.resyncPosition : map.nextDirty(map.resyncPosition);
    if (first > 0) this.o.log(`resync of ${this.o.target.id} resumes at offset ${first * rs} (region ${first} of ${map.regions})`);
    // Compare mode: checksums of a batch of regions first (one request per replica), then only
    // the regions that differ are copied, each under the range lock.
    let same: Set<number> = new Set();
    let batchEnd = -1;
    // Up to WINDOW regions are copied at once (one at a time, a copy waited two round trips per
    // region and the bench saw 64-78 MiB/s under a 100 MiB/s limit); they are marked copied in
    // order, so the saved position never passes a region still being copied.
    const window: Array<{ r: number; p: Promise<void> }> = [];
    // A region copied is clean in the map only once the target has flushed it: a target that
    // loses power loses what it had not flushed, and the map must still say so.
    let copied: number[] = [];
    const settleOldest = async (): Promise<void> => {
      const { r, p } = window.shift()!;
      await p;
      copied.push(r);
      this.done++;
      if (Date.now() - lastSave >= (this.o.saveEveryMs ?? 1000)) {
        lastSave = Date.now();
        await saveCopied();
      }
    };
    const saveCopied = async (): Promise<void> => {
      if (copied.length > 0) {
        await this.flushTarget();
        for (const r of copied) map.copied(r, r + 1);
        copied = [];
      }
      await map.flush();
    };
    const stop = async (): Promise<never> => {
      if (this.keepOnStop) {
        for (const w of window.splice(0)) await w.p.then(() => { copied.push(w.r); }, () => {});
        await saveCopied().catch(() => {});
      }
      throw new ResyncError('stopped', 'none');
    };
    for (let r = first; r >= 0 && r < map.regions; r = map.nextDirty(r + 1)) {
      if (this.stopped) await stop();
      const offset = r * rs;
      const length = Math.min(rs, this.o.size - offset);
      if (this.o.compare && r >= batchEnd) {
        batchEnd = Math.min(map.regions, r + Math.max(1, Math.floor(COMPARE_BATCH_BYTES / rs)));
        same = await this.compareBatch(r, batchEnd);
      }
      const p = !this.o.compare || !same.has(r) ? this.region(offset, length) : Promise.resolve();
      p.catch(() => {}); // awaited in settleOldest; one failing after an earlier failure is not unhandled
      window.push({ r, p });
      if (window.length >= WINDOW) await settleOldest();
      await this.pace();
    }
    while (window.length > 0) await settleOldest();
    await saveCopied();
  }

  /** FLUSH on the target: what was copied to it is durable there. */
  private async flushTarget(): Promise<void> {
    const dst = this.o.target;
    await deadline(io(dst, { op: Op.Flush, offset: 0, length: 0, flags: 0 }), this.o.timeoutMs, () => new ResyncError(`flushing ${dst.id} took over ${this.o.timeoutMs / 1000} s`, 'target'))
      .catch((e: unknown) => {
        if (e instanceof ResyncError) throw e;
        throw new ResyncError(`flushing ${dst.id}: errno ${String(e)}`, 'target');
      });
  }

  /**
   * The regions of [from, to) whose checksums match on source and target. Taken without the
   * range lock: every write reaches both replicas (the target is resyncing), so a write racing
   * the two checksums can only make a region look different (then it is copied under the lock),
   * never make regions that differ look the same.
   */
  private async compareBatch(from: number, to: number): Promise<Set<number>> {
    const src = this.o.source();
    if (!src) throw new ResyncError('no in-sync replica to copy from', 'source');
    const dst = this.o.target;
    const rs = this.o.map.regionSize;
    const offset = from * rs;
    const length = Math.min(to * rs, this.o.size) - offset;
    const [a, b] = await deadline(Promise.all([
      src.checksum(offset, length).catch((e: Error) => { throw new ResyncError(`checksum on ${src.id}: ${e.message}`, 'source'); }),
      dst.checksum(offset, length).catch((e: Error) => { throw new ResyncError(`checksum on ${dst.id}: ${e.message}`, 'target'); }),
    ]), this.o.timeoutMs, () => new ResyncError(`checksums of ${offset}+${length} took over ${this.o.timeoutMs / 1000} s`, 'none'));
    this.regionsCompared += to - from;
    const per = (rs / CHECKSUM_CHUNK) * CHECKSUM_DIGEST;
    const same = new Set<number>();
    for (let r = from; r < to; r++) {
      const at = (r - from) * per;
      const end = Math.min(a.length, at + per);
      if (a.compare(b, at, end, at, end) === 0) same.add(r);
    }
    return same;
  }

  /** Copies one region under the range lock. */
  private async region(offset: number, length: number): Promise<void> {
    const { lock } = this.o;
    let hold: ReturnType<RangeLock['acquire']>['hold'] | undefined;
    await new Promise<void>((resolve) => {
      const r = lock.acquire(offset, length, resolve);
      hold = r.hold;
      if (r.now) resolve();
    });
    try {
      await deadline(this.copy(offset, length), this.o.timeoutMs, () => new ResyncError(`copying ${offset}+${length} took over ${this.o.timeoutMs / 1000} s`, 'none'));
    } finally {
      lock.release(hold!);
    }
  }

  private async copy(offset: number, length: number): Promise<void> {
    const src = this.o.source();
    if (!src) throw new ResyncError('no in-sync replica to copy from', 'source');
    const dst = this.o.target;
    for (let at = offset; at < offset + length; ) {
      const n = Math.min(this.o.maxPayload, offset + length - at);
      const data = await io(src, { op: Op.Read, offset: at, length: n, flags: 0 }).catch((st: number) => {
        throw new ResyncError(`reading ${at}+${n} from ${src.id}: errno ${st}`, 'source');
      });
      await io(dst, { op: Op.Write, offset: at, length: n, flags: 0, payload: data }).catch((st: number) => {
        throw new ResyncError(`writing ${at}+${n} to ${dst.id}: errno ${st}`, 'target');
      });
      this.bytesCopied += n;
      at += n;
    }
  }

  /** Sleeps as long as the rate limit asks, given what was done since the start. */
  private async pace(): Promise<void> {
    if (this.o.rate <= 0) return;
    const work = this.bytesCopied + this.regionsCompared * this.o.map.regionSize / 16;
    const due = this.startedAt + (work / this.o.rate) * 1000;
    for (let wait = due - Date.now(); wait > 0 && !this.stopped; wait = due - Date.now()) {
      await new Promise((r) => setTimeout(r, Math.min(wait, 500)));
    }
  }
}

/** One request to a link as a promise: the READ data (kept: copied out of a lent buffer). */
function io(link: ReplicaLink, req: IoRequest): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    link.submit(req, (status, data) => {
      if (status !== 0) return reject(status);
      resolve(data ? Buffer.from(data) : undefined);
    });
  });
}
