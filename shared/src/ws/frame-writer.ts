// Writes WebSocket frames to a socket (RFC 6455 5.2): a message is one frame, header and
// payloads in one writev; with sendv, straight to the descriptor while nothing is queued.
import type { Socket } from 'node:net';
import { plainFdOf } from '../onread.js';
import { Opcode } from './frame.js';

/** Parts this small are copied into the frame header buffer (one buffer, no iovec). */
const MERGE_BELOW = 1024;
const EMPTY = Buffer.alloc(0);

/** sendmsg without blocking: bytes taken, or a negative errno (the native addon's sendv). */
export type Sendv = (fd: number, buffers: readonly Buffer[]) => number;

/** The header of a frame of `total` payload bytes; a client frame carries a zero masking key. */
function frameHeader(opcode: Opcode, total: number, masked: boolean, extra: number): { hdr: Buffer; at: number } {
  const lenBytes = total < 126 ? 0 : total < 65536 ? 2 : 8;
  const at = 2 + lenBytes + (masked ? 4 : 0);
  const hdr = Buffer.allocUnsafe(at + extra);
  hdr[0] = 0x80 | opcode; // FIN
  hdr[1] = (masked ? 0x80 : 0) | (lenBytes === 0 ? total : lenBytes === 2 ? 126 : 127);
  if (lenBytes === 2) hdr.writeUInt16BE(total, 2);
  else if (lenBytes === 8) {
    hdr.writeUInt32BE(Math.floor(total / 0x1_0000_0000), 2);
    hdr.writeUInt32BE(total >>> 0, 6);
  }
  // XOR with a zero key leaves the payload as it is: both ends are ours, and the mask guards
  // against cache poisoning by scripts in browsers, which never drive this client.
  if (masked) hdr.writeUInt32BE(0, 2 + lenBytes);
  return { hdr, at };
}

/** Frames one end writes: masked when it is the client. */
export class FrameWriter {
  /** The descriptor sendv writes to, or -1: everything goes through socket.write. */
  private readonly fd: number;
  private readonly out: Buffer[] = [];
  /** Frames the kernel took whole from sendv (the rest went through socket.write). */
  sentDirect = 0;

  constructor(
    private readonly socket: Socket,
    private readonly masked: boolean,
    private readonly sendv?: Sendv,
  ) {
    this.fd = sendv ? plainFdOf(socket) : -1;
  }

  /** One binary message made of parts: one frame, the parts as they are (no copy). */
  message(parts: readonly Buffer[]): void {
    if (parts.length === 0) parts = [EMPTY];
    let total = 0;
    for (let i = 0; i < parts.length; i++) total += parts[i]!.length;
    const first = parts[0]!;
    const merge = first.length < MERGE_BELOW;
    const { hdr, at } = frameHeader(Opcode.Binary, total, this.masked, merge ? first.length : 0);
    if (merge) first.copy(hdr, at);
    const out = this.out;
    out.push(hdr);
    for (let i = merge ? 1 : 0; i < parts.length; i++) out.push(parts[i]!);
    this.write(out, hdr.length + total - (merge ? first.length : 0));
    out.length = 0;
  }

  /** A control frame (close, ping, pong); its payload is copied into the header buffer. */
  control(opcode: Opcode, payload: Buffer): void {
    const { hdr, at } = frameHeader(opcode, payload.length, this.masked, payload.length);
    payload.copy(hdr, at);
    this.out.push(hdr);
    this.write(this.out, hdr.length);
    this.out.length = 0;
  }

  /**
   * Writes a frame's buffers (`bytes` in all), in order after everything written before: to
   * the descriptor while the socket's queue is empty, and what the kernel did not take (or
   * everything, without sendv or on an error, which the socket then reports) through the socket.
   */
  private write(bufs: readonly Buffer[], bytes: number): void {
    const socket = this.socket;
    let skip = 0;
    if (this.fd >= 0 && socket.writableLength === 0 && socket.writableCorked === 0) {
      const n = this.sendv!(this.fd, bufs);
      if (n === bytes) {
        this.sentDirect++;
        return;
      }
      if (n > 0) skip = n;
    }
    if (bufs.length === 1) {
      socket.write(skip ? bufs[0]!.subarray(skip) : bufs[0]!);
      return;
    }
    socket.cork();
    for (const b of bufs) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      socket.write(skip ? b.subarray(skip) : b);
      skip = 0;
    }
    socket.uncork();
  }
}
