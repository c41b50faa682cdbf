// The bytes received from one socket and not yet parsed. Chunks are kept as the socket
// delivered them; a read that fits in one chunk is a zero-copy subarray.

const EMPTY = Buffer.alloc(0);

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0;
  /** Offset of the first unread byte in chunks[head]. */
  private offset = 0;
  /** Unread bytes in the queue. */
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /**
   * Removes n bytes (n <= length). A subarray of the socket's chunk when they are contiguous
   * (valid as long as the caller keeps it: chunks are never reused), else a copy into `into`
   * (at least n bytes) or a new buffer.
   */
  take(n: number, into?: Buffer): Buffer {
    const first = this.chunks[this.head]!;
    const avail = first.length - this.offset;
    if (n <= avail) {
      const out = first.subarray(this.offset, this.offset + n);
      this.consume(n, avail);
      return out;
    }
    const out = into ? into.subarray(0, n) : Buffer.allocUnsafe(n);
    this.copyInto(out, 0, n);
    return out;
  }

  /** Copies up to `max` queued bytes into dst at `at`; returns how many were copied. */
  copyInto(dst: Buffer, at: number, max: number): number {
    let done = 0;
    while (done < max && this.length > 0) {
      const chunk = this.chunks[this.head]!;
      const avail = chunk.length - this.offset;
      const n = Math.min(avail, max - done);
      chunk.copy(dst, at + done, this.offset, this.offset + n);
      done += n;
      this.consume(n, avail);
    }
    return done;
  }

  /** Drops up to n queued bytes; returns how many were dropped. */
  skip(n: number): number {
    let done = 0;
    while (done < n && this.length > 0) {
      const avail = this.chunks[this.head]!.length - this.offset;
      const k = Math.min(avail, n - done);
      done += k;
      this.consume(k, avail);
    }
    return done;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.offset = 0;
    this.length = 0;
  }

  private consume(n: number, avail: number): void {
    this.length -= n;
    if (n < avail) {
      this.offset += n;
      return;
    }
    this.offset = 0;
    this.chunks[this.head] = EMPTY; // let the consumed chunk go unless a subarray holds it
    this.head++;
    if (this.head === this.chunks.length) {
      this.chunks.length = 0;
      this.head = 0;
    } else if (this.head >= 64) {
      // Drop consumed slots now and then instead of shift()ing per chunk.
      this.chunks.splice(0, this.head);
      this.head = 0;
    }
  }
}
