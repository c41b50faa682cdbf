// An in-memory BlockTarget for tests: sparse (64 KiB chunks allocated on first write), answers
// asynchronously in batches like a transport would, and refuses what its DiskInfo rules out.
// Hooks let a test hold completions, inject errors and see the requests it was sent.
import { Errno, FLAG_FUA, FLAG_NO_UNMAP, Op } from '@wsblk/shared';
import type { BlockTarget, DiskInfo, IoCallback, IoRequest } from '@wsblk/client';

export interface MemoryTargetOptions extends Partial<DiskInfo> {
  size: number;
  /** Bytes per allocation unit (64 KiB). */
  chunkSize?: number;
  /** Keep a log of every request (op, offset, length, flags). */
  record?: boolean;
}

export interface LoggedRequest {
  op: Op;
  offset: number;
  length: number;
  flags: number;
}

type Completion = { cb: IoCallback; status: number; data: Buffer | undefined };

export class MemoryTarget implements BlockTarget {
  readonly info: DiskInfo;
  readonly chunkSize: number;
  readonly log: LoggedRequest[] = [];
  /** Requests submitted and not yet answered. */
  pending = 0;
  private readonly chunks = new Map<number, Buffer>();
  private readonly record: boolean;
  private completions: Completion[] = [];
  private scheduled = false;
  private held = false;
  private fault: ((req: IoRequest) => number) | null = null;

  constructor(options: MemoryTargetOptions) {
    this.info = {
      exportName: options.exportName ?? 'mem',
      size: options.size,
      blockSize: options.blockSize ?? 4096,
      readOnly: options.readOnly ?? false,
      flush: options.flush ?? true,
      fua: options.fua ?? true,
      discard: options.discard ?? true,
      writeZeroes: options.writeZeroes ?? true,
      maxPayload: options.maxPayload ?? 4 << 20,
    };
    this.chunkSize = options.chunkSize ?? 64 << 10;
    this.record = options.record ?? false;
  }

  submit(req: IoRequest, cb: IoCallback): void {
    if (this.record) this.log.push({ op: req.op, offset: req.offset, length: req.length, flags: req.flags });
    this.pending++;
    let status = this.fault?.(req) ?? 0;
    let data: Buffer | undefined;
    if (status === 0) status = this.check(req);
    if (status === 0) {
      switch (req.op) {
        case Op.Read:
          data = this.read(req.offset, req.length);
          break;
        case Op.Write:
          this.write(req.offset, req.payload!);
          break;
        case Op.Discard:
          this.zero(req.offset, req.length, false);
          break;
        case Op.WriteZeroes:
          this.zero(req.offset, req.length, (req.flags & FLAG_NO_UNMAP) !== 0);
          break;
        case Op.Flush:
          break;
      }
    }
    this.completions.push({ cb, status, data });
    this.schedule();
  }

  /** Holds completions (the requests are applied, the answers wait) until release(). */
  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    this.schedule();
  }

  /** Fails every request for which fn returns an errno (0: carry on). null removes it. */
  injectFault(fn: ((req: IoRequest) => number) | null): void {
    this.fault = fn;
  }

  /** Direct access for tests, bypassing the queue. */
  read(offset: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    const cs = this.chunkSize;
    for (let done = 0; done < length; ) {
      const pos = offset + done;
      const index = Math.floor(pos / cs);
      const at = pos - index * cs;
      const n = Math.min(cs - at, length - done);
      const chunk = this.chunks.get(index);
      if (chunk) chunk.copy(out, done, at, at + n);
      else out.fill(0, done, done + n);
      done += n;
    }
    return out;
  }

  write(offset: number, data: Buffer): void {
    const cs = this.chunkSize;
    for (let done = 0; done < data.length; ) {
      const pos = offset + done;
      const index = Math.floor(pos / cs);
      const at = pos - index * cs;
      const n = Math.min(cs - at, data.length - done);
      let chunk = this.chunks.get(index);
      if (!chunk) {
        chunk = Buffer.alloc(cs);
        this.chunks.set(index, chunk);
      }
      data.copy(chunk, at, done, done + n);
      done += n;
    }
  }

  /** Bytes held in allocated chunks. */
  get allocatedBytes(): number {
    return this.chunks.size * this.chunkSize;
  }

  private zero(offset: number, length: number, keepAllocated: boolean): void {
    const cs = this.chunkSize;
    for (let done = 0; done < length; ) {
      const pos = offset + done;
      const index = Math.floor(pos / cs);
      const at = pos - index * cs;
      const n = Math.min(cs - at, length - done);
      const chunk = this.chunks.get(index);
      if (n === cs && !keepAllocated) this.chunks.delete(index);
      else if (chunk) chunk.fill(0, at, at + n);
      else if (keepAllocated) this.chunks.set(index, Buffer.alloc(cs));
      done += n;
    }
  }

  private check(req: IoRequest): number {
    const info = this.info;
    const isData = req.op === Op.Read || req.op === Op.Write;
    const writes = req.op === Op.Write || req.op === Op.Discard || req.op === Op.WriteZeroes;
    if (writes && info.readOnly) return Errno.EPERM;
    if (req.op === Op.Flush) return info.flush ? 0 : Errno.ENOTSUP;
    if (req.op === Op.Discard && !info.discard) return Errno.ENOTSUP;
    if (req.op === Op.WriteZeroes && !info.writeZeroes) return Errno.ENOTSUP;
    if ((req.flags & FLAG_FUA) !== 0 && !info.fua) return Errno.EINVAL;
    if (!Number.isSafeInteger(req.offset) || !Number.isSafeInteger(req.length) || req.offset < 0 || req.length <= 0) return Errno.EINVAL;
    if (isData && req.length > info.maxPayload) return Errno.EINVAL;
    if (req.offset + req.length > info.size) return writes ? Errno.ENOSPC : Errno.EINVAL;
    if (req.op === Op.Write && req.payload?.length !== req.length) return Errno.EINVAL;
    return 0;
  }

  private schedule(): void {
    if (this.scheduled || this.held || this.completions.length === 0) return;
    this.scheduled = true;
    setImmediate(() => this.complete());
  }

  /** Answers every queued request in one go, as one reply message from a server would. */
  private complete(): void {
    this.scheduled = false;
    if (this.held) return;
    const batch = this.completions;
    this.completions = [];
    this.pending -= batch.length;
    for (const c of batch) c.cb(c.status, c.data);
  }
}
