import type { Backend, BackendInfo, RequestContext } from './backend.js';

const CHUNK = 1 << 20;
/** Read by hole reads, never written (a reply only goes to a socket). */
const ZEROS = Buffer.alloc(CHUNK);

/** RAM-backed export: sparse 1 MiB chunks allocated on first write, gone when the server stops. */
export class MemoryBackend implements Backend {
  readonly info: BackendInfo;
  readonly description: string;
  private readonly chunks = new Map<number, Buffer>();

  constructor(size: number, opts: { readOnly?: boolean; blockSize?: number } = {}) {
    this.info = {
      size, blockSize: opts.blockSize ?? 512, readOnly: opts.readOnly ?? false,
      flush: true, fua: true, discard: true, writeZeroes: true,
    };
    this.description = `memory:${size}`;
  }

  async read(_ctx: RequestContext, offset: number, length: number): Promise<Buffer> {
    const first = Math.floor(offset / CHUNK);
    const at = offset - first * CHUNK;
    if (at + length <= CHUNK) {
      // Inside one chunk (the common case): no copy, a view of the chunk (or of shared zeroes).
      // The reply goes to the socket from this view; a WRITE to the same range that the server
      // runs before the socket has taken the bytes shows through. That can only be a WRITE the
      // client sent while this READ was still in flight, and a READ concurrent with an
      // overlapping WRITE has no defined result on any block device (NBD, blk-mq alike). The
      // bench measured the copy and the fresh 1 MiB buffer per read at 29 % of the server's
      // busy time in 1M sequential reads (bench/RESULTS.md, "What changed and why").
      const chunk = this.chunks.get(first);
      return chunk ? chunk.subarray(at, at + length) : ZEROS.subarray(0, length);
    }
    // Across chunks: one copy into a new buffer.
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    for (let c = first; done < length; c++) {
      const start = c === first ? offset - c * CHUNK : 0;
      const n = Math.min(CHUNK - start, length - done);
      const chunk = this.chunks.get(c);
      if (chunk) chunk.copy(out, done, start, start + n);
      else out.fill(0, done, done + n);
      done += n;
    }
    return out;
  }

  async write(_ctx: RequestContext, offset: number, data: Buffer): Promise<void> {
    this.each(offset, data.length, (c, start, n, done) => {
      let chunk = this.chunks.get(c);
      if (!chunk) this.chunks.set(c, (chunk = Buffer.alloc(CHUNK)));
      data.copy(chunk, start, done, done + n);
    });
  }

  async flush(_ctx: RequestContext): Promise<void> {}

  async discard(_ctx: RequestContext, offset: number, length: number): Promise<void> {
    this.zero(offset, length);
  }

  async writeZeroes(_ctx: RequestContext, offset: number, length: number): Promise<void> {
    this.zero(offset, length);
  }

  private meta: Buffer | null = null;

  async readMeta(): Promise<Buffer | null> {
    return this.meta;
  }

  async writeMeta(data: Buffer): Promise<void> {
    this.meta = Buffer.from(data);
  }

  async close(): Promise<void> {
    this.chunks.clear();
  }

  /** Bytes held in RAM (for RSS accounting in tests and the benchmark). */
  get allocatedBytes(): number {
    return this.chunks.size * CHUNK;
  }

  private zero(offset: number, length: number): void {
    this.each(offset, length, (c, start, n) => {
      const chunk = this.chunks.get(c);
      if (!chunk) return;
      if (n === CHUNK) this.chunks.delete(c);
      else chunk.fill(0, start, start + n);
    });
  }

  private each(offset: number, length: number, fn: (chunk: number, start: number, n: number, done: number) => void): void {
    let done = 0;
    for (let c = Math.floor(offset / CHUNK); done < length; c++) {
      const start = done === 0 ? offset - c * CHUNK : 0;
      const n = Math.min(CHUNK - start, length - done);
      fn(c, start, n, done);
      done += n;
    }
  }
}
