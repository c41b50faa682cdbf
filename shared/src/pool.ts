// Reusable large buffers. A daemon moving 1 MiB requests would otherwise allocate a fresh
// 1 MiB buffer per request (an NBD write payload, a READ reply frame); V8 frees those only
// when external memory has grown by tens of MiB, so at queue depth 128 the garbage set the
// daemon's peak RSS (bench/RESULTS.md, lever 12).
//
// Ownership is counted per buffer: take() hands one out with one reference; whoever keeps a
// view of it beyond the current call retain()s it and release()s it when done; the last
// release puts it back. retain/release ignore buffers the pool did not hand out, so code
// can call them on any Buffer. The pool never tracks what it handed out (only a weak count):
// a buffer its holders forget is simply garbage-collected.

/** Buffers smaller than this are not worth pooling: take() allocates them. */
export const POOL_MIN_BYTES = 64 * 1024;
/** Pooled buffers are sized in steps of this. */
const GRAIN = 64 * 1024;
/** A free buffer serves a request up to this much smaller than itself (fewer sizes kept). */
const MAX_WASTE_SHIFT = 2; // 1/4

export interface BufferPoolStats {
  freeBuffers: number;
  freeBytes: number;
  /** Buffers allocated (pool empty or no size fit). */
  allocated: number;
  /** Buffers taken from the free list. */
  reused: number;
}

export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  private freeBytes = 0;
  private readonly refs = new WeakMap<ArrayBuffer, number>();
  private allocated = 0;
  private reused = 0;
  /** take()s of pooled sizes so far; the idle timer compares it with what it saw last. */
  private takes = 0;
  private takesSeen = 0;
  private trimTimer: NodeJS.Timeout | undefined;

  /**
   * maxFreeBytes: free buffers kept at most (more are dropped on release).
   * idleMs: free buffers are dropped after this long without a take() (0: never).
   */
  constructor(readonly maxFreeBytes = 16 << 20, private readonly idleMs = 10_000) {}

  /** A buffer of n bytes (contents undefined). Pooled when n >= POOL_MIN_BYTES. */
  take(n: number): Buffer {
    if (n < POOL_MIN_BYTES) return Buffer.allocUnsafe(n);
    // A counter, not a clock read: a read of the clock is a system call where the kernel has no
    // vDSO clock (the test VM's HPET), and this runs per large frame.
    this.takes++;
    const size = Math.ceil(n / GRAIN) * GRAIN;
    const free = this.free;
    let best = -1;
    for (let i = free.length - 1; i >= 0; i--) {
      const len = free[i]!.byteLength;
      if (len >= size && len - (len >>> MAX_WASTE_SHIFT) <= size && (best < 0 || len < free[best]!.byteLength)) {
        best = i;
        if (len === size) break;
      }
    }
    let ab: ArrayBuffer;
    if (best >= 0) {
      ab = free[best]!;
      free[best] = free[free.length - 1]!;
      free.pop();
      this.freeBytes -= ab.byteLength;
      this.reused++;
    } else {
      ab = Buffer.allocUnsafeSlow(size).buffer as ArrayBuffer;
      this.allocated++;
      this.armTrim();
    }
    this.refs.set(ab, 1);
    return Buffer.from(ab, 0, n);
  }

  /** One more holder of the pooled buffer that `view` lies in (no-op for other buffers). */
  retain(view: Uint8Array): void {
    const ab = view.buffer as ArrayBuffer;
    const r = this.refs.get(ab);
    if (r !== undefined && r > 0) this.refs.set(ab, r + 1);
  }

  /**
   * A holder is done with the buffer `view` lies in; after the last one it is reused.
   * No-op for buffers the pool did not hand out, and for a buffer already back in the pool.
   */
  release(view: Uint8Array): void {
    const ab = view.buffer as ArrayBuffer;
    const r = this.refs.get(ab);
    if (r === undefined || r <= 0) return;
    if (r > 1) {
      this.refs.set(ab, r - 1);
      return;
    }
    this.refs.set(ab, 0);
    if (this.freeBytes + ab.byteLength > this.maxFreeBytes) return;
    this.free.push(ab);
    this.freeBytes += ab.byteLength;
  }

  /** Whether `view` lies in a buffer this pool handed out and someone still holds. */
  holds(view: Uint8Array): boolean {
    return (this.refs.get(view.buffer as ArrayBuffer) ?? 0) > 0;
  }

  /** Drops every free buffer. */
  trim(): void {
    this.free.length = 0;
    this.freeBytes = 0;
  }

  get stats(): BufferPoolStats {
    return { freeBuffers: this.free.length, freeBytes: this.freeBytes, allocated: this.allocated, reused: this.reused };
  }

  /** While the pool has buffers, a timer (not keeping the process alive) drops them when idle. */
  private armTrim(): void {
    if (this.idleMs <= 0 || this.trimTimer) return;
    this.takesSeen = this.takes;
    this.trimTimer = setInterval(() => {
      if (this.takes !== this.takesSeen) {
        this.takesSeen = this.takes;
        return;
      }
      this.trim();
      clearInterval(this.trimTimer);
      this.trimTimer = undefined;
    }, this.idleMs);
    this.trimTimer.unref();
  }
}

/**
 * Small buffers cut from the pool's slabs: one take() per slab, not an allocation per 4 KiB.
 * A piece is a holder of its slab like any view of a pooled buffer (retain, release); the
 * cutter holds the slab too until it has cut it up. Once every piece is released the slab goes
 * back to the pool and is cut again, its pages already in memory: a fresh slab faulted in a
 * zeroed page for every 4 KiB piece copied into it (bench/RESULTS.md, 2026-12-02 fourth session).
 */
export class SlabCutter {
  private slab: Buffer = Buffer.alloc(0);
  private used = 0;

  constructor(
    private readonly pool: BufferPool,
    /** Bytes per slab; a piece is at most this long. */
    readonly slabBytes = 256 * 1024,
  ) {
    if (slabBytes < POOL_MIN_BYTES) throw new RangeError(`slabs of ${slabBytes} bytes would not be pooled`);
  }

  /** n bytes (contents undefined, n <= slabBytes) that the caller holds once: it release()s them to the pool. */
  cut(n: number): Buffer {
    if (this.used + n > this.slab.length) {
      if (this.slab.length > 0) this.pool.release(this.slab);
      this.slab = this.pool.take(this.slabBytes);
      this.used = 0;
    }
    const piece = this.slab.subarray(this.used, this.used + n);
    this.used += (n + 7) & ~7; // 8-byte aligned, as the next copy's memcpy likes
    this.pool.retain(piece);
    return piece;
  }
}

/** The process's pool: the client's NBD write payloads and large reply frames; the server's large request frames. */
export const bufferPool = new BufferPool();
