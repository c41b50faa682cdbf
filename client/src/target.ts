// The narrow interface between frontends (NBD, ublk) and whatever stores the blocks.
// A frontend never knows whether a single server, a replica set or a test double answers.
import type { ExportCaps, Op } from '@wsblk/shared';

/** What the remote export offers, as the server's welcome told it. */
export interface DiskInfo extends ExportCaps {
  exportName: string;
  /** Largest READ/WRITE one request may carry; frontends split larger ones. */
  maxPayload: number;
}

export interface IoRequest {
  op: Op;
  offset: number;
  length: number;
  /** FLAG_FUA, FLAG_NO_UNMAP (from @wsblk/shared). */
  flags: number;
  /**
   * WRITE data, the caller's until the callback runs (then the caller may reuse it). A target
   * that keeps the bytes longer (a frame still queued, a replay) copies them, or retains them
   * when they lie in a bufferPool buffer.
   */
  payload?: Buffer;
}

/**
 * status is 0 or a positive errno (Errno); data is set for a good READ. A target may lend the
 * data (RemoteDisk with lendReads): then it is valid only during the callback, and a caller
 * that keeps it calls bufferPool.retain(data) and later bufferPool.release(data).
 */
export type IoCallback = (status: number, data?: Buffer) => void;

export interface BlockTarget {
  readonly info: DiskInfo;
  /**
   * Queues one request. The callback runs exactly once, never synchronously. A target that
   * survives reconnects keeps the request until the server answers it (or the I/O timeout).
   */
  submit(req: IoRequest, cb: IoCallback): void;
}
