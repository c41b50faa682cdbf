// Writes WebSocket frames to a socket (RFC 6455 5.2): a message is one frame, header and
// payloads in one writev (a client's masked into one copy); with sendv, straight to the
// descriptor while nothing is queued.
import type { Socket } from 'node:net';
import { plainFdOf } from '../onread.js';
import { POOL_MIN_BYTES, bufferPool, type BufferPool } from '../pool.js';
import { Opcode } from './frame.js';
import { MaskKeys, unmask } from './mask.js';

/** Parts this small are copied into the frame header buffer (one buffer, no iovec). */
const MERGE_BELOW = 1024;
const EMPTY = Buffer.alloc(0);
/** A client's masked frames up to this size are built in its writer's scratch buffer. */
const SCRATCH_MAX = 256 * 1024;
/** The scratch buffer's first size (it grows to the largest frame built in it). */
const SCRATCH_MIN = 64 * 1024;

/** sendmsg without blocking: bytes taken, or a negative errno (the native addon's sendv). */
export type Sendv = (fd: number, buffers: readonly Buffer[]) => number;

/** Bytes of the header of a frame of `total` payload bytes. */
function headerLength(total: number, masked: boolean): number {
  return 2 + (total < 126 ? 0 : total < 65536 ? 2 : 8) + (masked ? 4 : 0);
}

/** Writes the header of a final frame of `total` payload bytes at buf[0]; a client's carries `key`. */
function writeHeader(buf: Buffer, opcode: Opcode, total: number, masked: boolean, key: number): void {
  const lenBytes = total < 126 ? 0 : total < 65536 ? 2 : 8;
  buf[0] = 0x80 | opcode; // FIN
  buf[1] = (masked ? 0x80 : 0) | (lenBytes === 0 ? total : lenBytes === 2 ? 126 : 127);
  if (lenBytes === 2) buf.writeUInt16BE(total, 2);
  else if (lenBytes === 8) {
    buf.writeUInt32BE(Math.floor(total / 0x1_0000_0000), 2);
    buf.writeUInt32BE(total >>> 0, 6);
  }
  if (masked) buf.writeUInt32BE(key, 2 + lenBytes);
}

/**
 * Frames one end writes. A server's payloads go out as they are (no copy); a client's are
 * masked with a random key per frame (RFC 6455 5.3) into a copy, since the caller's buffers
 * (ublk tag buffers, pooled payloads) are still read by others: the copy is pooled and goes
 * back once the kernel has taken it.
 */
export class FrameWriter {
  /** The descriptor sendv writes to, or -1: everything goes through socket.write. */
  private readonly fd: number;
  private readonly out: Buffer[] = [];
  private readonly keys: MaskKeys | null;
  /** A client's buffer for masked frames the kernel takes at once (maskedMessage). */
  private scratch = EMPTY;
  /** Frames the kernel took whole from sendv (the rest went through socket.write). */
  sentDirect = 0;

  constructor(
    private readonly socket: Socket,
    private readonly masked: boolean,
    private readonly sendv?: Sendv,
    /** Where a client's masked copies come from. */
    private readonly pool: BufferPool = bufferPool,
  ) {
    this.fd = sendv ? plainFdOf(socket) : -1;
    this.keys = masked ? new MaskKeys() : null;
  }

  /** One binary message made of parts: one frame; a server's parts go as they are (no copy). */
  message(parts: readonly Buffer[]): void {
    if (parts.length === 0) parts = [EMPTY];
    let total = 0;
    for (let i = 0; i < parts.length; i++) total += parts[i]!.length;
    if (this.masked) return this.maskedMessage(parts, total);
    const first = parts[0]!;
    const merge = first.length < MERGE_BELOW;
    const at = headerLength(total, false);
    const hdr = Buffer.allocUnsafe(at + (merge ? first.length : 0));
    writeHeader(hdr, Opcode.Binary, total, false, 0);
    if (merge) first.copy(hdr, at);
    const out = this.out;
    out.push(hdr);
    for (let i = merge ? 1 : 0; i < parts.length; i++) out.push(parts[i]!);
    this.write(out, hdr.length + total - (merge ? first.length : 0));
    out.length = 0;
  }

  /**
   * A client's message: header and payload masked into one copy. While the socket's queue is
   * empty the copy is made in a scratch buffer of this writer's, used again for the next
   * message once the kernel has taken this one whole (as it does unless the socket is backed
   * up): no allocation per message, and memory that is warm. A frame the kernel takes only part
   * of leaves its scratch to the socket's queue, and the next message takes a new one. Larger
   * frames, and any while the queue holds bytes, are copied into a pooled buffer that goes back
   * once the kernel has it.
   */
  private maskedMessage(parts: readonly Buffer[], total: number): void {
    const at = headerLength(total, true);
    const n = at + total;
    const scratch = n <= SCRATCH_MAX && this.direct;
    let frame: Buffer;
    if (scratch) {
      if (this.scratch.length < n) this.scratch = Buffer.allocUnsafeSlow(Math.max(n, SCRATCH_MIN));
      frame = this.scratch.subarray(0, n);
    } else frame = this.pool.take(n);
    const key = this.keys!.next();
    writeHeader(frame, Opcode.Binary, total, true, key);
    let off = at;
    for (let i = 0; i < parts.length; i++) off += parts[i]!.copy(frame, off);
    unmask(frame.subarray(at), key);
    this.out.push(frame);
    // Only pooled copies need giving back (smaller ones are left to the GC, without a closure).
    const whole = this.write(this.out, n, !scratch && n >= POOL_MIN_BYTES ? () => this.pool.release(frame) : undefined);
    this.out.length = 0;
    if (scratch && !whole) this.scratch = EMPTY; // the socket's queue holds the rest of it
  }

  /**
   * A control frame (close, ping, pong). Its payload is copied into the header buffer (and
   * masked there by a client); `sent` runs once the kernel has taken it.
   */
  control(opcode: Opcode, payload: Buffer, sent?: () => void): void {
    const at = headerLength(payload.length, this.masked);
    const hdr = Buffer.allocUnsafe(at + payload.length);
    const key = this.keys ? this.keys.next() : 0;
    writeHeader(hdr, opcode, payload.length, this.masked, key);
    payload.copy(hdr, at);
    if (this.masked) unmask(hdr.subarray(at), key);
    this.out.push(hdr);
    this.write(this.out, hdr.length, sent);
    this.out.length = 0;
  }

  /** A frame written now goes straight to the descriptor: sendv is there and nothing waits in the socket's queue. */
  private get direct(): boolean {
    return this.fd >= 0 && this.socket.writableLength === 0 && this.socket.writableCorked === 0;
  }

  /**
   * Writes a frame's buffers (`bytes` in all), in order after everything written before: to
   * the descriptor while the socket's queue is empty, and what the kernel did not take (or
   * everything, without sendv or on an error, which the socket then reports) through the
   * socket. `sent` runs once all of it is in the kernel (or the socket failed). True when the
   * kernel took it all here (nothing of it is left in the socket's queue).
   */
  private write(bufs: readonly Buffer[], bytes: number, sent?: () => void): boolean {
    const socket = this.socket;
    let skip = 0;
    if (this.direct) {
      const n = this.sendv!(this.fd, bufs);
      if (n === bytes) {
        this.sentDirect++;
        sent?.();
        return true;
      }
      if (n > 0) skip = n;
    }
    if (bufs.length === 1) {
      socket.write(skip ? bufs[0]!.subarray(skip) : bufs[0]!, sent);
      return false;
    }
    socket.cork();
    const last = bufs.length - 1;
    for (let i = 0; i <= last; i++) {
      const b = bufs[i]!;
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      socket.write(skip ? b.subarray(skip) : b, i === last ? sent : undefined);
      skip = 0;
    }
    socket.uncork();
    return false;
  }
}
