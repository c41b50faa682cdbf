// The transmission phase of one connection: parses requests from the byte queue, turns them
// into target requests (splitting READ/WRITE larger than the target's max payload), and sends
// simple replies in completion order, batched per tick into one corked write (writev).
import type { Socket } from 'node:net';
import { FLAG_FUA, FLAG_NO_UNMAP, Op, bufferPool } from '@wsblk/shared';
import type { BlockTarget, IoCallback, IoRequest } from '../target.js';
import type { ByteQueue } from './byte-queue.js';
import {
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  Cmd,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOMEM,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EOVERFLOW,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  REQUEST_HEADER_BYTES,
  REQUEST_MAGIC,
  SIMPLE_REPLY_BYTES,
  SIMPLE_REPLY_MAGIC,
} from './constants.js';
import type { ExportInfo } from './export-info.js';

export interface FlowLimits {
  /** Stop reading requests while outstanding READ/WRITE bytes plus unsent replies exceed this. */
  maxBufferedBytes: number;
  /** ... or while this many requests are outstanding. */
  maxInflight: number;
}

// 16 MiB per connection: twice what 1M x QD8 needs, so it costs no throughput there, and it
// keeps a client at iodepth 128 from parking 64 MiB of payloads in the daemon (bench/RESULTS.md, lever 5).
export const DEFAULT_FLOW_LIMITS: FlowLimits = { maxBufferedBytes: 16 << 20, maxInflight: 1024 };

/** Bookkeeping cost of any request, so that many tiny ones still count. */
const REQUEST_COST = 256;
const SLAB_BYTES = 64 << 10;
const POOL_MAX = 256;

const enum State {
  Header,
  Payload,
  Skip,
  Stopped,
}

/** One NBD request in flight; pooled per connection, its target request object reused. */
class Command {
  type = 0;
  cookieHi = 0;
  cookieLo = 0;
  length = 0;
  cost = 0;
  /** Target requests still outstanding. */
  pending = 0;
  status = 0;
  /** READ data, one piece per target request (each retained from bufferPool). */
  data: Buffer[] = [];
  /** WRITE payload from bufferPool, released once every target request has answered. */
  payload: Buffer | null = null;
  readonly req: IoRequest = { op: Op.Read, offset: 0, length: 0, flags: 0, payload: undefined };
  readonly done: IoCallback;

  constructor(owner: Transmission) {
    this.done = (status, data) => owner.partDone(this, 0, status, data);
  }
}

export class Transmission {
  private state = State.Header;
  private readonly header = Buffer.allocUnsafe(REQUEST_HEADER_BYTES);
  /** WRITE being received: its command, payload buffer and bytes filled. */
  private cmd: Command | null = null;
  private payload: Buffer | null = null;
  private filled = 0;
  private skipLeft = 0;

  private inflight = 0;
  private inflightBytes = 0;
  private paused = false;
  /** DISC received, client half-closed, or the export is shutting down: no new requests. */
  private finishing = false;
  private closed = false;
  private inputEnded = false;
  private readonly pool: Command[] = [];

  /** Replies not yet handed to the socket; headers are packed in `slab` from runStart on. */
  private readonly out: Buffer[] = [];
  private outBytes = 0;
  /** READ data among `out` (retained): released once the socket has taken the batch. */
  private held: Buffer[] = [];
  private slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
  private slabPos = 0;
  private runStart = 0;
  private flushScheduled = false;
  private readonly flushBound = () => this.flush();

  constructor(
    private readonly socket: Socket,
    private readonly q: ByteQueue,
    private readonly exp: ExportInfo,
    private readonly target: BlockTarget,
    private readonly limits: FlowLimits = DEFAULT_FLOW_LIMITS,
    private readonly log: (message: string) => void = () => {},
  ) {}

  get outstanding(): number {
    return this.inflight;
  }

  /** Parses and dispatches queued requests until the queue runs dry or reading pauses. */
  parse(): void {
    const q = this.q;
    for (;;) {
      switch (this.state) {
        case State.Header: {
          if (this.paused) return;
          if (this.inflightBytes + this.outBytes + this.socket.writableLength > this.limits.maxBufferedBytes || this.inflight >= this.limits.maxInflight) {
            this.pause();
            return;
          }
          if (q.length < REQUEST_HEADER_BYTES) return this.starved();
          const h = q.take(REQUEST_HEADER_BYTES, this.header);
          if (h.readUInt32BE(0) !== REQUEST_MAGIC) {
            this.fail(`bad request magic 0x${h.readUInt32BE(0).toString(16)}`);
            return;
          }
          this.dispatch(
            h.readUInt16BE(4),
            h.readUInt16BE(6),
            h.readUInt32BE(8),
            h.readUInt32BE(12),
            h.readUInt32BE(16) * 0x1_0000_0000 + h.readUInt32BE(20),
            h.readUInt32BE(24),
          );
          break;
        }
        case State.Payload: {
          const payload = this.payload!;
          this.filled += q.copyInto(payload, this.filled, payload.length - this.filled);
          if (this.filled < payload.length) return this.starved();
          const cmd = this.cmd!;
          this.cmd = null;
          this.payload = null;
          this.state = State.Header;
          this.submitWrite(cmd, payload);
          break;
        }
        case State.Skip:
          this.skipLeft -= q.skip(this.skipLeft);
          if (this.skipLeft > 0) return this.starved();
          this.state = State.Header;
          break;
        case State.Stopped:
          q.clear();
          return;
      }
    }
  }

  /**
   * Where the next socket read may go straight: the rest of the WRITE payload being received,
   * when nothing else is queued before it (no copy, and no read chunk to collect later).
   */
  directTarget(): Buffer | null {
    if (this.state !== State.Payload || this.q.length !== 0) return null;
    return this.payload!.subarray(this.filled);
  }

  /** n bytes were read into what directTarget() returned. */
  directFilled(n: number): void {
    if (this.state !== State.Payload) return; // stopped meanwhile: the bytes are dropped
    this.filled += n;
    this.parse();
  }

  /**
   * The client sent its last byte (half-close): requests already queued still run, then the
   * connection ends as after DISC.
   */
  endOfInput(): void {
    this.inputEnded = true;
    this.parse();
  }

  /** Stops reading requests; the socket is ended once every outstanding one has a reply. */
  finish(): void {
    if (this.finishing) return;
    this.finishing = true;
    this.stop();
    this.endIfIdle();
  }

  /** The socket is gone: late target callbacks only do bookkeeping. */
  onClose(): void {
    this.closed = true;
    this.stop();
    this.out.length = 0;
    this.outBytes = 0;
    releaseAll(this.held);
  }

  private stop(): void {
    const partial = this.cmd;
    if (partial !== null) {
      // A half-received WRITE can never complete.
      this.inflight--;
      this.inflightBytes -= partial.cost;
      this.release(partial);
      this.cmd = null;
      // Not given back to the pool: the socket may still have its rest as the buffer of its
      // next read (directTarget), and nothing may write into a buffer another request holds.
      this.payload = null;
    }
    this.state = State.Stopped;
    this.q.clear();
  }

  /** The queue holds no complete request: after a half-close none will come. */
  private starved(): void {
    if (this.inputEnded) this.finish();
  }

  onDrain(): void {
    this.updateFlow();
  }

  private dispatch(flags: number, type: number, cookieHi: number, cookieLo: number, offset: number, length: number): void {
    const exp = this.exp;
    switch (type) {
      case Cmd.Read: {
        const error = flags & ~(exp.fua ? CMD_FLAG_FUA : 0)
          ? NBD_EINVAL
          : length > exp.maxRequest || offset > exp.size - length
            ? NBD_EINVAL
            : 0;
        if (error !== 0 || length === 0) return this.replyNow(error, cookieHi, cookieLo);
        const cmd = this.start(type, cookieHi, cookieLo, length, length);
        return this.submitRead(cmd, offset);
      }
      case Cmd.Write: {
        const error = flags & ~(exp.fua ? CMD_FLAG_FUA : 0)
          ? NBD_EINVAL
          : exp.readOnly
            ? NBD_EPERM
            : length > exp.maxRequest
              ? NBD_EINVAL
              : offset > exp.size - length
                ? NBD_ENOSPC
                : 0;
        if (error !== 0 || length === 0) {
          this.replyNow(error, cookieHi, cookieLo);
          // A refused WRITE still carries its payload: consume it without keeping it.
          if (length > 0) {
            this.skipLeft = length;
            this.state = State.Skip;
          }
          return;
        }
        const cmd = this.start(type, cookieHi, cookieLo, length, length);
        const req = cmd.req;
        req.op = Op.Write;
        req.offset = offset;
        req.length = length;
        req.flags = flags & CMD_FLAG_FUA ? FLAG_FUA : 0;
        if (this.q.length >= length) return this.submitWrite(cmd, this.q.take(length));
        const payload = bufferPool.take(length);
        this.filled = this.q.copyInto(payload, 0, length);
        this.cmd = cmd;
        this.payload = payload;
        this.state = State.Payload;
        return;
      }
      case Cmd.Flush: {
        if (!exp.flush || flags !== 0) return this.replyNow(NBD_EINVAL, cookieHi, cookieLo);
        const cmd = this.start(type, cookieHi, cookieLo, 0, 0);
        return this.submitOne(cmd, Op.Flush, 0, 0, 0);
      }
      case Cmd.Trim:
      case Cmd.WriteZeroes: {
        const zeroes = type === Cmd.WriteZeroes;
        const allowed = (exp.fua ? CMD_FLAG_FUA : 0) | (zeroes ? CMD_FLAG_NO_HOLE : 0);
        const error = exp.readOnly
          ? NBD_EPERM
          : (flags & ~allowed) !== 0 || !(zeroes ? exp.writeZeroes : exp.trim)
            ? NBD_EINVAL
            : offset > exp.size - length
              ? zeroes ? NBD_ENOSPC : NBD_EINVAL
              : 0;
        if (error !== 0 || length === 0) return this.replyNow(error, cookieHi, cookieLo);
        const cmd = this.start(type, cookieHi, cookieLo, length, 0);
        const f = (flags & CMD_FLAG_FUA ? FLAG_FUA : 0) | (flags & CMD_FLAG_NO_HOLE ? FLAG_NO_UNMAP : 0);
        return this.submitOne(cmd, zeroes ? Op.WriteZeroes : Op.Discard, offset, length, f);
      }
      case Cmd.Disc:
        this.finish();
        return;
      default:
        // CACHE, BLOCK_STATUS (never advertised) and unknown commands; none carries a payload.
        return this.replyNow(NBD_EINVAL, cookieHi, cookieLo);
    }
  }

  private start(type: number, cookieHi: number, cookieLo: number, length: number, dataBytes: number): Command {
    const cmd = this.pool.pop() ?? new Command(this);
    cmd.type = type;
    cmd.cookieHi = cookieHi;
    cmd.cookieLo = cookieLo;
    cmd.length = length;
    cmd.cost = dataBytes + REQUEST_COST;
    cmd.status = 0;
    this.inflight++;
    this.inflightBytes += cmd.cost;
    return cmd;
  }

  private submitOne(cmd: Command, op: Op, offset: number, length: number, flags: number): void {
    const req = cmd.req;
    req.op = op;
    req.offset = offset;
    req.length = length;
    req.flags = flags;
    req.payload = undefined;
    cmd.pending = 1;
    this.submit(req, cmd.done);
  }

  private submitRead(cmd: Command, offset: number): void {
    const max = this.exp.maxTargetPayload;
    const length = cmd.length;
    if (length <= max) return this.submitOne(cmd, Op.Read, offset, length, 0);
    const parts = Math.ceil(length / max);
    cmd.pending = parts;
    for (let i = 0; i < parts; i++) {
      const at = i * max;
      const n = Math.min(max, length - at);
      this.submit({ op: Op.Read, offset: offset + at, length: n, flags: 0 }, (status, data) => this.partDone(cmd, i, status, data));
    }
  }

  private submitWrite(cmd: Command, payload: Buffer): void {
    const req = cmd.req;
    cmd.payload = payload;
    const max = this.exp.maxTargetPayload;
    if (cmd.length <= max) {
      req.payload = payload;
      cmd.pending = 1;
      this.submit(req, cmd.done);
      return;
    }
    const parts = Math.ceil(cmd.length / max);
    cmd.pending = parts;
    for (let i = 0; i < parts; i++) {
      const at = i * max;
      const n = Math.min(max, cmd.length - at);
      this.submit(
        { op: Op.Write, offset: req.offset + at, length: n, flags: req.flags, payload: payload.subarray(at, at + n) },
        (status) => this.partDone(cmd, i, status),
      );
    }
  }

  /** A target that throws instead of answering fails the request, not the connection. */
  private submit(req: IoRequest, cb: IoCallback): void {
    try {
      this.target.submit(req, cb);
    } catch (err) {
      this.log(`nbd target threw on submit: ${(err as Error).message}`);
      process.nextTick(cb, NBD_EIO);
    }
  }

  /** Called by target callbacks; the last one of a command sends its reply. */
  partDone(cmd: Command, index: number, status: number, data?: Buffer): void {
    if (status !== 0) {
      if (cmd.status === 0) cmd.status = nbdErrno(status);
    } else if (cmd.type === Cmd.Read && cmd.status === 0) {
      const max = this.exp.maxTargetPayload;
      const expected = cmd.length <= max ? cmd.length : Math.min(max, cmd.length - index * max);
      if (data === undefined || data.length !== expected) cmd.status = NBD_EIO;
      else {
        // The target may lend the data only for this call: keep it until the socket has it.
        bufferPool.retain(data);
        cmd.data[index] = data;
      }
    }
    if (--cmd.pending > 0) return;
    this.inflight--;
    this.inflightBytes -= cmd.cost;
    if (!this.closed) {
      this.queueHeader(cmd.status, cmd.cookieHi, cmd.cookieLo);
      if (cmd.type === Cmd.Read && cmd.status === 0) {
        for (const d of cmd.data) this.queueData(d);
        cmd.data.length = 0;
      }
    }
    this.release(cmd);
    if (this.closed) return;
    if (this.finishing) this.endIfIdle();
    else this.updateFlow();
  }

  /** The command's buffers go back (the target has answered every part of it). */
  private release(cmd: Command): void {
    releaseAll(cmd.data);
    if (cmd.payload !== null) {
      bufferPool.release(cmd.payload);
      cmd.payload = null;
    }
    cmd.req.payload = undefined;
    if (this.pool.length < POOL_MAX) this.pool.push(cmd);
  }

  private replyNow(error: number, cookieHi: number, cookieLo: number): void {
    this.queueHeader(error, cookieHi, cookieLo);
  }

  private queueHeader(error: number, cookieHi: number, cookieLo: number): void {
    if (this.slabPos + SIMPLE_REPLY_BYTES > this.slab.length) {
      this.closeRun();
      this.slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.slabPos = 0;
      this.runStart = 0;
    }
    const s = this.slab;
    const p = this.slabPos;
    s.writeUInt32BE(SIMPLE_REPLY_MAGIC, p);
    s.writeUInt32BE(error, p + 4);
    s.writeUInt32BE(cookieHi, p + 8);
    s.writeUInt32BE(cookieLo, p + 12);
    this.slabPos = p + SIMPLE_REPLY_BYTES;
    this.outBytes += SIMPLE_REPLY_BYTES;
    this.scheduleFlush();
  }

  private queueData(data: Buffer): void {
    this.closeRun();
    this.out.push(data);
    this.held.push(data);
    this.outBytes += data.length;
  }

  /** Headers packed since the last data buffer become one buffer of the batch. */
  private closeRun(): void {
    if (this.slabPos > this.runStart) {
      this.out.push(this.slab.subarray(this.runStart, this.slabPos));
      this.runStart = this.slabPos;
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(this.flushBound);
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    this.closeRun();
    const out = this.out;
    if (out.length === 0) return;
    const socket = this.socket;
    // Lent READ data goes back to the pool when the socket is done with the batch (written,
    // or failed when the socket is destroyed: nothing is written after that).
    const held = this.held;
    let done: (() => void) | undefined;
    if (held.length > 0) {
      this.held = [];
      done = () => releaseAll(held);
    }
    if (out.length === 1) socket.write(out[0]!, done);
    else {
      socket.cork();
      const last = out.length - 1;
      for (let i = 0; i < last; i++) socket.write(out[i]!);
      socket.write(out[last]!, done);
      socket.uncork();
    }
    out.length = 0;
    this.outBytes = 0;
    if (this.finishing) this.endIfIdle();
  }

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  /** Resumes reading once outstanding work is back under half the limits. */
  private updateFlow(): void {
    if (!this.paused || this.finishing || this.closed) return;
    const buffered = this.inflightBytes + this.outBytes + this.socket.writableLength;
    if (buffered > this.limits.maxBufferedBytes / 2 || this.inflight > this.limits.maxInflight / 2) return;
    this.paused = false;
    this.socket.resume();
    this.parse();
  }

  private endIfIdle(): void {
    if (this.closed || this.inflight > 0 || this.flushScheduled) return;
    this.closed = true;
    this.socket.end(() => this.socket.destroy());
  }

  private fail(reason: string): void {
    this.log(`nbd connection dropped: ${reason}`);
    this.state = State.Stopped;
    this.closed = true;
    this.q.clear();
    this.socket.destroy();
  }
}

/** Gives lent or pooled buffers back to bufferPool and empties the list. */
function releaseAll(bufs: Buffer[]): void {
  for (let i = 0; i < bufs.length; i++) bufferPool.release(bufs[i]!);
  bufs.length = 0;
}

/** Target statuses are errno values; NBD knows only a few of them. */
export function nbdErrno(status: number): number {
  switch (status) {
    case NBD_EPERM:
    case NBD_EIO:
    case NBD_ENOMEM:
    case NBD_EINVAL:
    case NBD_ENOSPC:
    case NBD_EOVERFLOW:
    case NBD_ENOTSUP:
    case NBD_ESHUTDOWN:
      return status;
    default:
      return NBD_EIO;
  }
}
