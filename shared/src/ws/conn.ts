// One WebSocket connection whose handshake is done: the state machine of RFC 6455 (open,
// closing, closed), the close handshake, pings, and delivery of messages to its owner.
import type { Socket } from 'node:net';
import { CloseCode } from '../constants.js';
import type { BufferPool } from '../pool.js';
import { Opcode, WS_CLOSE } from './frame.js';
import { FrameReader, type FrameSink } from './frame-reader.js';
import { FrameWriter, type Sendv } from './frame-writer.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Close codes a peer may send (RFC 6455 7.4: not 1004-1006 or 1015, nothing below 1000). */
function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
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
   * is the handler's to keep. A client's masked copies of its frames come from it too (from
   * the process's bufferPool without it).
   */
  pool?: BufferPool;
  /**
   * sendmsg without blocking (the native addon's sendv: bytes taken, or a negative errno).
   * With it, a frame goes straight to a plain socket's descriptor whenever nothing waits in the
   * socket's queue, without the Writable machinery of socket.write (a write request, state
   * updates, an after-write callback on a nextTick: bench/RESULTS.md, lever 19); what the kernel
   * does not take is queued with socket.write as before. TLS sockets never use it.
   */
  sendv?: Sendv;
  /**
   * A connection with part of a frame (or of a fragmented message) in, that then receives no
   * byte for this long, is closed with 4005 'frame stalled' (ms; 0: never), within twice this.
   * A timer compares the count of bytes read at its ticks, so reads take no timestamps; time
   * that the owner paused reading does not count. Default 30000.
   */
  frameTimeoutMs?: number;
  /**
   * While more than this many bytes wait in the socket's queue (a peer that sends but does not
   * read), the socket is not read ('backlog' pause) until it drains. What one read already
   * brought is still delivered, so the owner bounds the work one message can queue. Default 16 MiB.
   */
  maxBuffered?: number;
}

const FRAME_TIMEOUT_MS = 30_000;
const MAX_BUFFERED = 16 << 20;
/** The pause reason of a socket whose queue holds more than maxBuffered. */
const BACKLOG = 'backlog';

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
  /** Messages (and a close) that came before start(); null once started. */
  private early: Array<[Buffer, boolean]> | null = [];
  private earlyClose: [number, string] | undefined;
  private closedByOwner = false;
  private readonly writer: FrameWriter;
  private readonly maxBuffered: number;
  /** The frame timeout's timer and the reader's byte count at its last tick (-1: not watching). */
  private frameTimer: NodeJS.Timeout | undefined;
  private bytesAtTick = -1;
  /**
   * A pong of ours is in the socket's queue; a ping meanwhile is answered once it has left,
   * and only the latest one (RFC 6455 5.5.3): a peer that pings but never reads queues one pong.
   */
  private pongQueued = false;
  private nextPong: Buffer | null = null;
  private readonly pongSent = () => {
    this.pongQueued = false;
    const payload = this.nextPong;
    this.nextPong = null;
    if (payload && this.isOpen) this.pong(payload);
  };

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
    this.writer = new FrameWriter(socket, role === 'client', opts.sendv, opts.pool);
    // Not below the socket's high-water mark: under it a full write sets no 'drain' to wait for.
    this.maxBuffered = Math.max(opts.maxBuffered ?? MAX_BUFFERED, socket.writableHighWaterMark ?? 0);
    this.reader = new FrameReader(this, role === 'server', opts.maxMessage, opts.pool);
    socket.setNoDelay(true);
    socket.on('close', () => this.onSocketClose());
    socket.on('end', () => socket.end());
    socket.on('error', () => {}); // 'close' follows, with code 1006 when no close frame came
    socket.on('drain', () => {
      this.resumeReading(BACKLOG);
      this.ondrain();
    });
    const frameTimeout = opts.frameTimeoutMs ?? FRAME_TIMEOUT_MS;
    if (frameTimeout > 0) {
      this.frameTimer = setInterval(() => this.checkStall(), frameTimeout);
      this.frameTimer.unref();
    }
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
    this.writer.message(parts);
    if (this.socket.writableLength > this.maxBuffered) this.pauseReading(BACKLOG);
  }

  /** Frames the kernel took whole from sendv (the rest went through socket.write). */
  get sentDirect(): number {
    return this.writer.sentDirect;
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
      if (!this.isOpen) return;
      // Held as a copy: a view would pin the arena it lies in.
      if (this.pongQueued) this.nextPong = Buffer.from(payload);
      else this.pong(payload);
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

  private control(opcode: Opcode, payload: Buffer, sent?: () => void): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    this.writer.control(opcode, payload, sent);
    if (this.socket.writableLength > this.maxBuffered) this.pauseReading(BACKLOG);
  }

  private pong(payload: Buffer): void {
    this.pongQueued = true;
    this.control(Opcode.Pong, payload, this.pongSent);
  }

  /**
   * A tick of the frame timeout: part of a frame is in, no byte came since the last tick, and
   * reading was not paused by us meanwhile: the peer stalled mid-frame.
   */
  private checkStall(): void {
    const bytes = this.reader.bytesIn;
    const stalled = bytes === this.bytesAtTick && this.reader.partial;
    this.bytesAtTick = this.pausedFor.size === 0 ? bytes : -1;
    if (stalled && this.pausedFor.size === 0 && this.state === 'open') this.onProtocolError(CloseCode.Timeout, 'frame stalled');
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
    clearInterval(this.frameTimer);
    const pc = this.peerClose;
    const code = pc ? pc.code : WS_CLOSE.abnormal;
    const reason = pc ? pc.reason : '';
    if (this.early) this.earlyClose = [code, reason];
    else this.onclose(code, reason);
  }
}
