import { Op, POOL_MIN_BYTES, SlabCutter, bufferPool } from '@wsblk/shared';
import type { IoCallback, IoRequest } from '../target.js';

/** A request the transport has accepted and not yet completed to its frontend. */
export interface InflightEntry {
  seq: number;
  req: IoRequest;
  cb: IoCallback;
  /** Bytes this request holds against the in-flight budget (payload or read length). */
  bytes: number;
  /** Sent on the current connection (and so counted in the budget). */
  sent: boolean;
  /** When it was accepted (ms, monotonic), for the I/O timeout. */
  since: number;
  /**
   * The WRITE data the transport sends (and replays): the table's own, set by add(). It may
   * outlive the request's callback (a frame still in a socket's queue), so it is never the
   * caller's buffer unless that is a pooled one it holds a reference to.
   */
  payload?: Buffer;
}

/**
 * Every accepted, uncompleted request, in sequence order (a Map keeps insertion order and
 * sequence numbers only grow). A completed request leaves the table at once, so it can never
 * be replayed; everything still here is replayed, in order, after a reconnect.
 *
 * The table owns the bytes of each WRITE from add() until the request leaves it: a reference
 * to a bufferPool buffer (retained, no copy: the NBD frontend's large payloads), else a copy
 * (a ublk tag buffer is the kernel's again once the callback ran). Whoever else keeps the
 * bytes longer (a socket's queue) retains them too.
 */
export class InflightTable {
  private readonly entries = new Map<number, InflightEntry>();
  /** Accepted but not sent: over the byte budget, or no connection. FIFO from waitHead (slots before it are empty). */
  private waiting: (InflightEntry | undefined)[] = [];
  private waitHead = 0;
  private sentBytes = 0;

  constructor(readonly maxBytes: number) {}

  get size(): number {
    return this.entries.size;
  }

  get bytesInFlight(): number {
    return this.sentBytes;
  }

  add(e: InflightEntry): void {
    const p = e.req.payload;
    if (p && (e.req.op === Op.Write || e.req.op === Op.MetaWrite)) e.payload = ownPayload(p);
    this.entries.set(e.seq, e);
    this.waiting.push(e);
  }

  /**
   * Takes waiting entries that fit in the budget, marking them sent. One request larger than
   * the whole budget still goes when nothing else is in flight, so nothing waits forever.
   */
  takeSendable(out: InflightEntry[]): void {
    const waiting = this.waiting;
    while (this.waitHead < waiting.length) {
      const e = waiting[this.waitHead]!;
      if (!this.entries.has(e.seq)) { waiting[this.waitHead++] = undefined; continue; } // timed out while waiting
      if (this.sentBytes > 0 && this.sentBytes + e.bytes > this.maxBytes) break;
      // The slot lets go of it: a taken entry kept here until the next compaction (1024 later)
      // outlived its request by tens of ms, and with it its callback, its caller's state and its
      // data, all promoted to the old generation (a major GC every ~0.6 s under 4k writes).
      waiting[this.waitHead++] = undefined;
      e.sent = true;
      this.sentBytes += e.bytes;
      out.push(e);
    }
    if (this.waitHead > 1024 && this.waitHead * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.waitHead);
      this.waitHead = 0;
    }
  }

  /** Removes a completed (or failed) request; returns it, or undefined if unknown. */
  complete(seq: number): InflightEntry | undefined {
    const e = this.entries.get(seq);
    if (!e) return undefined;
    this.entries.delete(seq);
    if (e.sent) this.sentBytes -= e.bytes;
    if (e.payload) bufferPool.release(e.payload);
    return e;
  }

  /**
   * The connection is gone: every sent entry must be sent again, in sequence order, before
   * anything that was waiting. Returns nothing; the next takeSendable() yields them.
   */
  requeueAll(): void {
    const all: InflightEntry[] = [];
    for (const e of this.entries.values()) {
      e.sent = false;
      all.push(e);
    }
    this.waiting = all;
    this.waitHead = 0;
    this.sentBytes = 0;
  }

  /** Entries accepted before `cutoff` (for the I/O timeout). Oldest first. */
  olderThan(cutoff: number): InflightEntry[] {
    const out: InflightEntry[] = [];
    for (const e of this.entries.values()) {
      if (e.since >= cutoff) break;
      out.push(e);
    }
    return out;
  }

  /** Removes and returns everything (teardown). */
  drainAll(): InflightEntry[] {
    const all = [...this.entries.values()];
    for (const e of all) if (e.payload) bufferPool.release(e.payload);
    this.entries.clear();
    this.waiting = [];
    this.waitHead = 0;
    this.sentBytes = 0;
    return all;
  }
}

/** Where copies of small payloads come from (a piece of a pooled slab, not an allocation each). */
const pieces = new SlabCutter(bufferPool);

/**
 * Bytes that may be kept past the caller's callback: a pooled buffer (a slab piece too) itself,
 * retained; else a copy, pooled. The caller release()s it to bufferPool when done. A replica set
 * calls it once per write, so its replicas share (and each retain) one copy.
 */
export function ownPayload(p: Buffer): Buffer {
  if (bufferPool.holds(p)) {
    bufferPool.retain(p);
    return p;
  }
  const n = p.length;
  const copy = n < POOL_MIN_BYTES ? pieces.cut(n) : bufferPool.take(n);
  p.copy(copy);
  return copy;
}
