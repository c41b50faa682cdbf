// One NBD client connection: the socket, its byte queue, and the phase it is in
// (handshake, then transmission).
import type { Socket } from 'node:net';
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

export class NbdConnection {
  private readonly q = new ByteQueue();
  private readonly exp: ExportInfo;
  private handshake: Handshake | null;
  private transmission: Transmission | null = null;
  private isClosed = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  /** Resolves once the socket is closed. */
  readonly closed: Promise<void>;

  constructor(
    private readonly socket: Socket,
    private readonly target: BlockTarget,
    private readonly options: ConnectionOptions,
  ) {
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
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
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
