// The WebSocket layer of both ends (RFC 6455, binary messages, no extensions).
//
// Why our own and not ws's: ws copies every frame that spans socket reads into a buffer of its
// own (a 1 MiB READ reply arrives in ~16 reads: 1 MiB copied in user space), allocates a buffer
// per socket read, and runs each frame through a Writable stream. Here:
// - the client reads with `onread`: the kernel writes straight into the buffer we name for each
//   read, so a large frame is read into its own buffer (no copy after the first read), and
//   small frames share an arena (one allocation for many reads, no buffer per read);
// - the server re-opens http's upgrade socket with onread too (acceptUpgrade, on a duplicate
//   of its descriptor); where it cannot (TLS), it reads 'data' events and hands complete frames
//   over as views of the chunk they arrived in, copying only a frame split across chunks;
// - a message is written as one frame, header and payloads corked into one writev.
// Frames are checked as RFC 6455 says (reserved bits, opcodes, control frame size, masking by
// role, lengths); the first violation closes with 1002 (1009: too big).
import type { BufferPool } from './pool.js';
import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { plainFdOf } from './onread.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/** A fresh Sec-WebSocket-Key. */
export function newKey(): string {
  return randomBytes(16).toString('base64');
}

/** A Sec-WebSocket-Key as RFC 6455 requires it: base64 of 16 bytes. */
export function isValidKey(key: unknown): key is string {
  return typeof key === 'string' && /^[+/0-9A-Za-z]{22}==$/.test(key);
}

export const enum Opcode {
  Continuation = 0,
  Text = 1,
  Binary = 2,
  Close = 8,
  Ping = 9,
  Pong = 10,
}

/** RFC 6455 close codes this layer itself sends or reports. */
export const WS_CLOSE = { normal: 1000, protocol: 1002, noStatus: 1005, abnormal: 1006, tooBig: 1009 } as const;

/** Where a socket read puts its bytes, and what to do once they are there. */
export interface ReadTarget {
  /** The buffer the next read fills (at most its length). */
  nextBuffer(): Buffer;
  /** `n` bytes were read into the buffer nextBuffer() returned last. */
  filled(n: number): void;
}

export interface FrameSink {
  /** A whole data message (one frame, or fragments joined). */
  onMessage(data: Buffer, binary: boolean): void;
  /** A control frame (close, ping, pong) with its payload. */
  onControl(opcode: Opcode, payload: Buffer): void;
  /** The peer broke the framing rules; nothing more is parsed. */
  onProtocolError(code: number, reason: string): void;
}

/** Bytes of one arena (a buffer that many small frames and reads share). */
const ARENA = 128 * 1024;
/** A read gets at least this much room; less left in the arena starts a new one. */
const MIN_READ = 16 * 1024;
/** A frame that does not fit the arena gets a buffer of its own when its payload is this large. */
const OWN_BUFFER_AT = 32 * 1024;

interface Head {
  fin: boolean;
  opcode: Opcode;
  /** Masking key as a u32 (0: not masked, or masked with zeros: nothing to undo). */
  mask: number;
  headerLen: number;
  payloadLen: number;
}

/**
 * Parses frames from socket bytes. Two ways to feed it: ReadTarget (the socket reads into
 * nextBuffer(); see onread in node:net) or push() with the chunks of 'data' events.
 * Buffers handed to the sink are never written again by the reader: arenas are only appended
 * to, and a new arena is taken when one is used up, so consumers may keep what they get.
 */
export class FrameReader implements ReadTarget {
  private arena = Buffer.allocUnsafe(ARENA);
  /** Unparsed bytes are arena[start, end). */
  private start = 0;
  private end = 0;
  /** A frame being read into a buffer of its own: its header, payload buffer and fill. */
  private big: Buffer | null = null;
  private bigHead: Head | null = null;
  private bigFilled = 0;
  /** Fragments of a message not yet finished (fin = 0 seen). */
  private fragments: Buffer[] = [];
  private fragmentBytes = 0;
  private fragmentBinary = true;
  private failed = false;
  /** The incomplete frame at arena[start, end) is known to end inside this arena. */
  private tailFits = false;

  constructor(
    private readonly sink: FrameSink,
    /** True on the server: client frames must be masked; false on the client: must not be. */
    private readonly masked: boolean,
    private readonly maxMessage: number,
    /** Where buffers of frames too big for the arena come from; the sink gives them back. */
    private readonly pool?: BufferPool,
  ) {}

  nextBuffer(): Buffer {
    if (this.big) return this.big.subarray(this.bigFilled);
    // Little room left: a frame known to end in this arena reads on into it; otherwise (only a
    // partial header, at most 13 bytes, or nothing pending) the next reads go to a new arena.
    if (this.arena.length - this.end < MIN_READ && !this.tailFits) this.newArena(0);
    return this.arena.subarray(this.end);
  }

  filled(n: number): void {
    if (this.failed) return;
    if (this.big) {
      this.bigFilled += n;
      if (this.bigFilled === this.big.length) this.finishBig();
      return;
    }
    this.end += n;
    this.start = this.parse(this.arena, this.start, this.end);
    if (!this.failed) this.holdTail();
  }

  /** Bytes of a 'data' event. Complete frames are handed over as views of `chunk`. */
  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length && !this.failed) {
      if (!this.big && this.start === this.end) {
        // Nothing pending: parse straight from the chunk, then keep only its incomplete tail.
        off = this.parse(chunk, off, chunk.length);
        if (off === chunk.length || this.failed) return;
        const head = this.readHead(chunk, off, chunk.length);
        if (this.failed) return;
        if (head && head.payloadLen >= OWN_BUFFER_AT) {
          this.startBig(head, chunk, off + head.headerLen, chunk.length);
          return;
        }
      }
      const dst = this.nextBuffer();
      const k = Math.min(dst.length, chunk.length - off);
      chunk.copy(dst, 0, off, off + k);
      off += k;
      this.filled(k);
    }
  }

  /** Parses complete frames in buf[pos, end); returns where the first incomplete one starts. */
  private parse(buf: Buffer, pos: number, end: number): number {
    while (pos < end && !this.failed) {
      const head = this.readHead(buf, pos, end);
      if (!head) return pos;
      const frameEnd = pos + head.headerLen + head.payloadLen;
      if (frameEnd > end) return pos;
      this.frame(head, buf.subarray(pos + head.headerLen, frameEnd));
      pos = frameEnd;
    }
    return pos;
  }

  /** The header at buf[pos]; null when not all of it is there yet. Checks every rule. */
  private readHead(buf: Buffer, pos: number, end: number): Head | null {
    if (end - pos < 2) return null;
    const b0 = buf[pos]!;
    const b1 = buf[pos + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const opcode = (b0 & 0x0f) as Opcode;
    const isMasked = (b1 & 0x80) !== 0;
    let len = b1 & 0x7f;
    const headerLen = 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + (isMasked ? 4 : 0);
    if ((b0 & 0x70) !== 0) return this.fail(WS_CLOSE.protocol, 'reserved bits set (no extension was negotiated)');
    if (opcode > Opcode.Binary && opcode < Opcode.Close || opcode > Opcode.Pong) return this.fail(WS_CLOSE.protocol, `unknown opcode ${opcode}`);
    if (opcode >= Opcode.Close && (!fin || len > 125)) return this.fail(WS_CLOSE.protocol, 'control frame fragmented or longer than 125 bytes');
    if (isMasked !== this.masked) return this.fail(WS_CLOSE.protocol, this.masked ? 'client frame not masked' : 'server frame masked');
    if (end - pos < headerLen) return null;
    if (len === 126) len = buf.readUInt16BE(pos + 2);
    else if (len === 127) {
      const hi = buf.readUInt32BE(pos + 2);
      if (hi > 0x1fffff) return this.fail(WS_CLOSE.tooBig, 'frame length over 2^53');
      len = hi * 0x1_0000_0000 + buf.readUInt32BE(pos + 6);
    }
    if (opcode < Opcode.Close && len + this.fragmentBytes > this.maxMessage) {
      return this.fail(WS_CLOSE.tooBig, `message larger than ${this.maxMessage} bytes`);
    }
    const mask = isMasked ? buf.readUInt32BE(pos + headerLen - 4) : 0;
    return { fin, opcode, mask, headerLen, payloadLen: len };
  }

  /** Keeps the incomplete frame at arena[start, end) readable: own buffer or a new arena. */
  private holdTail(): void {
    this.tailFits = false;
    // Everything parsed: reads go on after `end` (what came before may be held by consumers).
    if (this.start === this.end) return;
    const head = this.readHead(this.arena, this.start, this.end);
    if (this.failed) return;
    if (head && this.start + head.headerLen + head.payloadLen <= this.arena.length) {
      this.tailFits = true;
    } else if (head) {
      if (head.payloadLen >= OWN_BUFFER_AT) {
        this.startBig(head, this.arena, this.start + head.headerLen, this.end);
        this.start = this.end;
      } else {
        this.newArena(head.headerLen + head.payloadLen);
      }
    } else if (!head && this.arena.length - this.start < 14) {
      this.newArena(0);
    }
  }

  /** Moves the unparsed tail to a fresh arena of at least `need` bytes. */
  private newArena(need: number): void {
    const tail = this.end - this.start;
    const next = Buffer.allocUnsafe(Math.max(ARENA, need, tail + MIN_READ));
    this.arena.copy(next, 0, this.start, this.end);
    this.arena = next;
    this.start = 0;
    this.end = tail;
  }

  private startBig(head: Head, src: Buffer, from: number, to: number): void {
    this.big = this.pool ? this.pool.take(head.payloadLen) : Buffer.allocUnsafe(head.payloadLen);
    this.bigHead = head;
    this.bigFilled = src.copy(this.big, 0, from, to);
    if (this.bigFilled === head.payloadLen) this.finishBig();
  }

  private finishBig(): void {
    const big = this.big!;
    const head = this.bigHead!;
    this.big = null;
    this.bigHead = null;
    this.bigFilled = 0;
    this.frame(head, big);
  }

  private frame(head: Head, payload: Buffer): void {
    if (head.mask !== 0) unmask(payload, head.mask);
    const op = head.opcode;
    if (op >= Opcode.Close) {
      this.sink.onControl(op, payload);
      return;
    }
    if (op === Opcode.Continuation) {
      if (this.fragments.length === 0) return void this.fail(WS_CLOSE.protocol, 'continuation frame without a message');
    } else if (this.fragments.length !== 0) {
      return void this.fail(WS_CLOSE.protocol, 'new message inside a fragmented one');
    } else if (head.fin) {
      this.sink.onMessage(payload, op === Opcode.Binary);
      return;
    } else {
      this.fragmentBinary = op === Opcode.Binary;
    }
    this.fragments.push(payload);
    this.fragmentBytes += payload.length;
    if (!head.fin) return;
    const data = Buffer.concat(this.fragments, this.fragmentBytes);
    if (this.pool) for (const f of this.fragments) this.pool.release(f);
    this.fragments = [];
    this.fragmentBytes = 0;
    this.sink.onMessage(data, this.fragmentBinary);
  }

  private fail(code: number, reason: string): null {
    if (!this.failed) {
      this.failed = true;
      this.sink.onProtocolError(code, reason);
    }
    return null;
  }
}

function unmask(buf: Buffer, mask: number): void {
  const m0 = mask >>> 24, m1 = (mask >>> 16) & 0xff, m2 = (mask >>> 8) & 0xff, m3 = mask & 0xff;
  const n = buf.length;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    buf[i] ^= m0;
    buf[i + 1] ^= m1;
    buf[i + 2] ^= m2;
    buf[i + 3] ^= m3;
  }
  const tail = [m0, m1, m2, m3];
  for (; i < n; i++) buf[i] ^= tail[i & 3]!;
}

/** Parts this small are copied into the frame header buffer (one buffer, no iovec). */
const MERGE_BELOW = 1024;
const EMPTY = Buffer.alloc(0);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Close codes a peer may send (RFC 6455 7.4: not 1004-1006 or 1015, nothing below 1000). */
function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

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

export interface WsConnOptions {
  /** Largest message accepted (1009 beyond). */
  maxMessage: number;
  /** How long close() waits for the peer's close frame before cutting the socket (ms). */
  closeTimeoutMs?: number;
  /**
   * Large frames are read into buffers from this pool, and a message is only valid during its
   * onmessage call: the buffer goes back to the pool when the call returns, unless the handler
   * retained it (pool.retain, then pool.release when done). Without a pool a message's buffer
   * is the handler's to keep.
   */
  pool?: BufferPool;
  /**
   * sendmsg without blocking (the native addon's sendv: bytes taken, or a negative errno).
   * With it, a frame goes straight to a plain socket's descriptor whenever nothing waits in the
   * socket's queue, without the Writable machinery of socket.write (a write request, state
   * updates, an after-write callback on a nextTick: bench/RESULTS.md, lever 19); what the kernel
   * does not take is queued with socket.write as before. TLS sockets never use it.
   */
  sendv?: (fd: number, buffers: readonly Buffer[]) => number;
}

type State = 'open' | 'closing' | 'closed';

/**
 * One WebSocket over a socket whose handshake is done. Handlers are plain fields: onmessage,
 * onclose (once, with the peer's code or 1006), onpong. Nothing reaches them before start():
 * frames that came with the handshake (`head`) or right after it wait until the owner has set
 * its handlers and calls start().
 */
export class WsConn implements FrameSink {
  onmessage: (data: Buffer, binary: boolean) => void = () => {};
  onclose: (code: number, reason: string) => void = () => {};
  onpong: () => void = () => {};
  /** The socket's queue has emptied (bufferedBytes fell to 0). */
  ondrain: () => void = () => {};
  readonly reader: FrameReader;
  /** Why reading is paused (backpressure); reading resumes when this is empty. */
  private readonly pausedFor = new Set<string>();
  private state: State = 'open';
  private peerClose: { code: number; reason: string } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly masked: boolean;
  /** Messages (and a close) that came before start(); null once started. */
  private early: Array<[Buffer, boolean]> | null = [];
  private earlyClose: [number, string] | undefined;
  private closedByOwner = false;
  /** The descriptor sendv writes to, or -1: everything goes through socket.write. */
  private readonly fd: number;
  private readonly out: Buffer[] = [];
  /** Frames the kernel took whole from sendv (the rest went through socket.write). */
  sentDirect = 0;

  /**
   * `reads`: 'data' when the socket is read with 'data' events (an http upgrade socket that
   * could not be adopted, see acceptUpgrade), 'onread' when the caller feeds `reader` (a
   * socket opened with onread). `head`: bytes read past the handshake.
   */
  constructor(
    readonly socket: Socket,
    role: 'client' | 'server',
    private readonly opts: WsConnOptions,
    head?: Buffer,
    readonly reads: 'data' | 'onread' = role === 'server' ? 'data' : 'onread',
  ) {
    this.masked = role === 'client';
    this.fd = opts.sendv ? plainFdOf(socket) : -1;
    this.reader = new FrameReader(this, role === 'server', opts.maxMessage, opts.pool);
    socket.setNoDelay(true);
    socket.on('close', () => this.onSocketClose());
    socket.on('end', () => socket.end());
    socket.on('error', () => {}); // 'close' follows, with code 1006 when no close frame came
    socket.on('drain', () => this.ondrain());
    if (head && head.length) this.reader.push(head);
    if (reads === 'data') socket.on('data', (chunk: Buffer) => this.reader.push(chunk));
  }

  /** Delivers what came early, then everything as it comes. Call once the handlers are set. */
  start(): void {
    const early = this.early;
    if (!early) return;
    this.early = null;
    // Everything queued arrived while the connection was open, even if a close (or a protocol
    // error) came after it: deliver it in order, unless the owner closes meanwhile.
    for (const [data, binary] of early) {
      if (!this.closedByOwner) this.onmessage(data, binary);
      this.opts.pool?.release(data);
    }
    if (this.earlyClose) this.onclose(...this.earlyClose);
  }

  /** Bytes written that the kernel has not taken yet (queued on the socket). */
  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  /** Stops reading from the socket for `reason` (backpressure) until resumeReading(reason). */
  pauseReading(reason: string): void {
    if (this.pausedFor.size === 0) this.socket.pause();
    this.pausedFor.add(reason);
  }

  /** Ends the pause for `reason`; reading resumes once no reason is left. */
  resumeReading(reason: string): void {
    if (!this.pausedFor.delete(reason) || this.pausedFor.size !== 0) return;
    if (!this.socket.destroyed) this.socket.resume();
  }

  get isOpen(): boolean {
    return this.state === 'open' && !this.socket.destroyed;
  }

  /** Sends one binary message made of parts: one frame, the parts as they are (no copy). */
  send(parts: readonly Buffer[]): void {
    if (!this.isOpen) return;
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

  /**
   * Writes a frame's buffers (`bytes` in all), in order after everything written before: to
   * the descriptor while the socket's queue is empty, and what the kernel did not take (or
   * everything, without sendv or on an error, which the socket then reports) through the socket.
   */
  private write(bufs: readonly Buffer[], bytes: number): void {
    const socket = this.socket;
    let skip = 0;
    if (this.fd >= 0 && socket.writableLength === 0 && socket.writableCorked === 0) {
      const n = this.opts.sendv!(this.fd, bufs);
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

  ping(): void {
    if (this.isOpen) this.control(Opcode.Ping, Buffer.alloc(0));
  }

  /** Starts the close handshake; the socket is cut if the peer does not answer in time. */
  close(code: number = WS_CLOSE.normal, reason = ''): void {
    this.closedByOwner = true;
    this.sendClose(code, reason);
  }

  private sendClose(code: number, reason: string): void {
    if (this.state !== 'open') return;
    this.state = 'closing';
    // A close reason must fit in 123 bytes.
    const why = Buffer.from(reason).subarray(0, 123);
    const payload = Buffer.allocUnsafe(2 + why.length);
    payload.writeUInt16BE(code, 0);
    why.copy(payload, 2);
    this.control(Opcode.Close, payload);
    if (this.peerClose) this.socket.end();
    else this.armTimer();
  }

  /** Cuts the socket now. */
  terminate(): void {
    this.socket.destroy();
  }

  // --- FrameSink ---------------------------------------------------------------------------

  onMessage(data: Buffer, binary: boolean): void {
    if (this.state !== 'open') return this.opts.pool?.release(data);
    if (this.early) return void this.early.push([data, binary]);
    this.onmessage(data, binary);
    this.opts.pool?.release(data);
  }

  onControl(opcode: Opcode, payload: Buffer): void {
    if (opcode === Opcode.Ping) {
      if (this.isOpen) this.control(Opcode.Pong, payload);
    } else if (opcode === Opcode.Pong) {
      this.onpong();
    } else {
      if (payload.length === 1) return this.onProtocolError(WS_CLOSE.protocol, 'close frame of 1 byte');
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : WS_CLOSE.noStatus;
      let reason: string;
      try {
        reason = utf8.decode(payload.subarray(2));
      } catch {
        return this.onProtocolError(WS_CLOSE.protocol, 'close reason is not UTF-8');
      }
      if (payload.length >= 2 && !isValidCloseCode(code)) return this.onProtocolError(WS_CLOSE.protocol, `close code ${code} may not be sent`);
      this.peerClose = { code, reason };
      if (this.state === 'open') {
        // Answer with the same code, then let the socket end.
        this.state = 'closing';
        const echo = payload.length >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0);
        this.control(Opcode.Close, Buffer.from(echo));
        this.armTimer();
      }
      this.socket.end();
    }
  }

  onProtocolError(code: number, reason: string): void {
    if (this.state === 'open') {
      this.sendClose(code, reason);
      this.peerClose = { code, reason };
    }
    this.socket.end();
    this.armTimer();
  }

  // -----------------------------------------------------------------------------------------

  private control(opcode: Opcode, payload: Buffer): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    const { hdr, at } = frameHeader(opcode, payload.length, this.masked, payload.length);
    payload.copy(hdr, at);
    this.out.push(hdr);
    this.write(this.out, hdr.length);
    this.out.length = 0;
  }

  private armTimer(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => this.socket.destroy(), this.opts.closeTimeoutMs ?? 1000);
    this.timer.unref();
  }

  private onSocketClose(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.timer);
    const pc = this.peerClose;
    const code = pc ? pc.code : WS_CLOSE.abnormal;
    const reason = pc ? pc.reason : '';
    if (this.early) this.earlyClose = [code, reason];
    else this.onclose(code, reason);
  }
}
