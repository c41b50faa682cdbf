// Where an export's blocks live. Backends hold data; filters (delay, error) wrap a Backend and
// return one, in the manner of nbdkit's plugins and filters. Offsets and lengths are checked
// against the size of the moment by validate.ts before a backend sees them.
import type { ExportCaps } from '@wsblk/shared';

/** FLUSH/FUA mean something when data can be volatile; a read-only backend offers no writes. */
export type BackendInfo = ExportCaps;

/**
 * Who asks, passed to every call: filters match on it (a fault for one session or epoch) and
 * pass it down unchanged.
 */
export interface RequestContext {
  /** The session id. */
  readonly session: string;
  /** The session's epoch of the connection that sent the request. */
  readonly epoch: number;
  /** The request's sequence number. */
  readonly seq: number;
}

export interface Backend {
  /**
   * What the export offers. It may change between calls (a resized image): callers read it
   * when they use it, never keep a copy of it (or of its size) past one request.
   */
  readonly info: BackendInfo;
  /** A short description for logs, e.g. "file:/srv/disk0.img". */
  readonly description: string;
  /**
   * The data, which may be a view of the backend's own memory (MemoryBackend): callers only
   * send it, never modify it, and a later overlapping write may show through it.
   */
  read(ctx: RequestContext, offset: number, length: number): Promise<Buffer>;
  /** With fua, resolves only once the data is on stable storage. */
  write(ctx: RequestContext, offset: number, data: Buffer, fua: boolean): Promise<void>;
  /** Every write that resolved before this call is on stable storage when it resolves. */
  flush(ctx: RequestContext): Promise<void>;
  /** The range reads back as zeroes afterwards (we never advertise otherwise). */
  discard(ctx: RequestContext, offset: number, length: number): Promise<void>;
  /** noUnmap: keep the blocks allocated. */
  writeZeroes(ctx: RequestContext, offset: number, length: number, noUnmap: boolean, fua: boolean): Promise<void>;
  /** The export's membership record (replica sets), kept next to its data; null when none. */
  readMeta(): Promise<Buffer | null>;
  /** Replaces the record atomically; on stable storage when it resolves. */
  writeMeta(data: Buffer): Promise<void>;
  close(): Promise<void>;
}

/**
 * A writer lock that spans servers, offered by a backend on shared storage (RBD's exclusive
 * lock): the server takes it for its writer session and lets it go when that session ends.
 */
export interface ClusterLock {
  /**
   * Takes the lock for `writer` and records who it is (in the shared storage). Rejects when
   * another server's writer holds it, unless `steal` fences that one first, or `writer.reclaim`
   * and the lock was recorded for this very writer (same secret hash): a device taking its own
   * lock back from the gateway it left, which is fenced the same way. `vacant` says whether
   * this server is still without a writer once the lock is held: when not, the record stays
   * that writer's, and the caller refuses this one.
   */
  acquireLock(steal: boolean, writer: LockWriter, vacant: () => boolean): Promise<LockTaken>;
  releaseLock(): Promise<void>;
}

/** Who a cluster lock is taken for. */
export interface LockWriter {
  clientId: string;
  /** sha256 of the device's session secret (hex); absent: the lock can never be reclaimed. */
  secretHash?: string;
  /** The device wrote through another gateway before (a failover): it may take its own lock back. */
  reclaim: boolean;
}

export interface LockTaken {
  /** Who holds the lock now, as the shared storage names this server (its Ceph client address). */
  owner: string;
  /** The gateway (its Ceph client address) the writer's lock was taken back from, fenced. */
  reclaimedFrom?: string;
}

export function clusterLockOf(b: Backend): ClusterLock | undefined {
  const l = b as Partial<ClusterLock>;
  return typeof l.acquireLock === 'function' && typeof l.releaseLock === 'function' ? (l as ClusterLock) : undefined;
}
