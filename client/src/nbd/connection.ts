// One NBD client connection: the socket, its byte queue, and the phase it is in
// (handshake, then transmission). The socket reads (onread) into buffers we choose: the rest
// of a WRITE payload straight into the payload's buffer, everything else into an arena that
// many reads share (never written twice, so the queue can keep views of it).
import type { Socket } from 'node:net';
import { socketOnFd, type ReadTarget } from '@wsblk/shared';
import type { BlockTarget } from '../target.js';
import { ByteQueue } from './byte-queue.js';
import { describeExport, type ExportInfo, type ExportInfoOptions } from './export-info.js';
import { Handshake } from './handshake.js';
import { Transmission, type FlowLimits } from './transmission.js';

export interface ConnectionOptions extends ExportInfoOptions {
  limits: FlowLimits;
  /** A client that has not reached transmission by then is dropped (0: never). */
  handshakeTimeoutMs: number;
  log: (message: string) => void;
}

/** Bytes of one read arena, and the least room a read gets (less left: a new arena). */
const ARENA = 64 * 1024;
const MIN_READ = 8 * 1024;

export class NbdConnection implements ReadTarget {
  private readonly q = new ByteQueue();
  private arena = Buffer.allocUnsafe(ARENA);
  private arenaEnd = 0;
  /** The payload view nextBuffer() returned last, if it returned one. */
  private direct: Buffer | null = null;
  readonly socket: Socket;
  private readonly exp: ExportInfo;
  private handshake: Handshake | null;
  private transmission: Transmission | null = null;
  private isClosed = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  /** Resolves once the socket is closed. */
  readonly closed: Promise<void>;

  /** fd: an accepted connection (UnixListener). */
  constructor(
    fd: number,
    private readonly target: BlockTarget,
    private readonly options: ConnectionOptions,
  ) {
    const socket = socketOnFd(fd, this);
    this.socket = socket;
    // Built per connection so that a client sees the target's info as it is when it connects.
    this.exp = describeExport(target.info, options);
    this.handshake = new Handshake(this.exp, (data) => socket.write(data));
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true;
        clearTimeout(this.handshakeTimer);
        this.transmission?.onClose();
        resolve();
      });
    });
    socket.on('end', () => this.onEnd());
    socket.on('drain', () => this.transmission?.onDrain());
    socket.on('error', (err) => {
      // Clients vanishing mid-reply (EPIPE, ECONNRESET) are routine.
      options.log(`nbd connection error: ${err.message}`);
    });
    socket.write(Handshake.greeting());
    if (options.handshakeTimeoutMs > 0) {
      this.handshakeTimer = setTimeout(() => {
        options.log('nbd handshake timed out');
        socket.destroy();
      }, options.handshakeTimeoutMs);
      this.handshakeTimer.unref();
    }
  }

  /**
   * Stops taking requests; the socket closes once every outstanding one has its reply.
   * A connection still in its handshake is dropped.
   */
  shutdown(): void {
    if (this.isClosed) return;
    if (this.transmission) this.transmission.finish();
    else this.socket.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** ReadTarget (for the socket's onread): where the next read goes. */
  nextBuffer(): Buffer {
    const direct = this.transmission?.directTarget() ?? null;
    this.direct = direct;
    if (direct) return direct;
    if (ARENA - this.arenaEnd < MIN_READ) {
      this.arena = Buffer.allocUnsafe(ARENA);
      this.arenaEnd = 0;
    }
    return this.arena.subarray(this.arenaEnd);
  }

  /** ReadTarget: `n` bytes were read into the buffer nextBuffer() returned last. */
  filled(n: number): void {
    if (this.direct !== null) {
      this.direct = null;
      this.transmission!.directFilled(n);
      return;
    }
    const chunk = this.arena.subarray(this.arenaEnd, this.arenaEnd + n);
    this.arenaEnd += n;
    this.onData(chunk);
  }

  private onData(chunk: Buffer): void {
    this.q.push(chunk);
    if (this.transmission) {
      this.transmission.parse();
      return;
    }
    const hs = this.handshake;
    if (!hs) return;
    const step = hs.step(this.q);
    if (step === 'close') {
      this.handshake = null;
      this.q.clear();
      if (hs.closeReason) this.options.log(`nbd handshake ended: ${hs.closeReason}`);
      this.socket.pause();
      this.socket.end(() => this.socket.destroy());
    } else if (step === 'transmission') {
      this.handshake = null;
      clearTimeout(this.handshakeTimer);
      this.transmission = new Transmission(this.socket, this.q, this.exp, this.target, this.options.limits, this.options.log);
      this.transmission.parse();
    }
  }

  private onEnd(): void {
    // The client will send nothing more: answer what it asked for, then close.
    if (this.transmission) this.transmission.endOfInput();
    else this.socket.destroy();
  }
}
