import { CloseCode, LIMITS, Opcode, ProtocolError, decodeMessage, encodeWelcome, logger, type Hello, type WsConn } from '@wsblk/shared';
import type { TransportFaults } from '../faults/fault-table.js';
import { LinkFaults } from '../faults/link-faults.js';
import type { Session } from '../session/session.js';
import type { SessionTable } from '../session/session-table.js';
import { Refusal, admit, welcomeOf, type Admission, type ExportHandle } from './handshake.js';
import type { ReplyBudget } from './reply-budget.js';
import { Transmission } from './transmission.js';

const log = logger('server');

type State = 'hello' | 'fencing' | 'ready' | 'draining' | 'closed';

/** What every connection of a server shares. */
export interface ConnectionTerms {
  sessions: SessionTable;
  budget: ReplyBudget;
  /** A connection that sends no hello this long after the upgrade is closed (ms). */
  helloTimeoutMs: number;
  /** A ping goes out this often; a peer silent for two of them is closed (ms, 0 = never). */
  keepaliveMs: number;
  /** The transport faults set on the server (read while `active`). */
  faults: TransportFaults;
}

/**
 * One client WebSocket and its phases: the handshake (hello -> fence -> welcome), then the
 * transmission (requests in, replies out). Owns the socket, the state and the timers that close
 * a silent peer; the phases do the work.
 */
export class ServerConnection {
  private state: State = 'hello';
  private session: Session | undefined;
  private transmission: Transmission | undefined;
  /** This connection's transport faults, from the welcome on. */
  private link: LinkFaults | undefined;
  private helloTimer: NodeJS.Timeout | undefined;
  private keepalive: NodeJS.Timeout | undefined;
  /** The peer sent something (a message or a pong), or took bytes off its socket, since the last tick. */
  private heard = true;
  private silentTicks = 0;
  private bufferedAtTick = 0;
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;

  constructor(
    private readonly ws: WsConn,
    private readonly exp: ExportHandle,
    private readonly grantReadOnly: boolean,
    private readonly terms: ConnectionTerms,
    private readonly peer: string,
  ) {
    ws.onmessage = (data, isBinary) => this.onMessage(data, isBinary);
    ws.onpong = () => { this.heard = true; };
    // A black hole answers no ping either (the WebSocket layer answers them itself).
    const control = ws.onControl.bind(ws);
    ws.onControl = (op, payload) => {
      if (op === Opcode.Ping && this.terms.faults.active && this.link?.silent) return;
      control(op, payload);
    };
    this.closed = new Promise((resolve) => {
      ws.onclose = (code, reason) => {
        log.debug(`${peer}: closed (${code}${reason ? ' ' + reason : ''})`);
        this.onClose(code);
        resolve();
      };
    });
    this.helloTimer = setTimeout(() => {
      if (this.state === 'hello') this.closeWith(CloseCode.Timeout, `no hello within ${terms.helloTimeoutMs / 1000} s`);
    }, terms.helloTimeoutMs);
    this.helloTimer.unref();
    if (terms.keepaliveMs > 0) {
      this.keepalive = setInterval(() => this.tick(), terms.keepaliveMs);
      this.keepalive.unref();
    }
    ws.start();
  }

  /** Cuts the socket (after close() had its chance). */
  terminate(): void {
    this.ws.terminate();
  }

  /** Called when a newer connection resumes the session, or another client steals the export. */
  fence(reason = 'fenced by a newer connection'): void {
    if (this.state === 'closed') return;
    log.info(`${this.peer}: session ${this.session?.id.slice(0, 8)}: ${reason}`);
    this.toClosed();
    // The close handshake of a connection that may be half-open waits 1 s at most (WsConn).
    this.ws.close(CloseCode.Fenced, reason);
  }

  /** Graceful stop (SIGTERM): stop taking requests, finish running ones, send their replies. */
  async drain(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'draining';
    const t = this.transmission;
    if (t) {
      t.dropHeld();
      await t.idle();
      t.flush();
    }
    this.ws.close(CloseCode.GoingAway, 'server shutting down');
  }

  /** Keepalive: ping, or close a peer that answered nothing for two intervals. */
  private tick(): void {
    // A black-holed connection stays open however silent it is: that is the fault.
    if (this.terms.faults.active && this.link?.silent) return;
    // A peer that takes our bytes off its socket is alive, even while we do not read its pongs
    // (reading paused: it owes us nothing, we owe it replies).
    const buffered = this.ws.bufferedBytes;
    if (buffered < this.bufferedAtTick) this.heard = true;
    this.bufferedAtTick = buffered;
    this.silentTicks = this.heard ? 0 : this.silentTicks + 1;
    this.heard = false;
    if (this.silentTicks >= 2) {
      return this.closeWith(CloseCode.Timeout, `no answer to keepalives for ${(2 * this.terms.keepaliveMs) / 1000} s`);
    }
    this.ws.ping();
  }

  private toClosed(): void {
    this.state = 'closed';
    clearTimeout(this.helloTimer);
    clearInterval(this.keepalive);
    this.transmission?.stop();
    this.link?.close();
  }

  private closeWith(code: CloseCode, reason: string): void {
    log.warn(`${this.peer}: closing: ${reason}`);
    this.toClosed();
    this.ws.close(code, reason);
  }

  private onClose(code: number): void {
    if (this.state !== 'closed') this.toClosed();
    // A client that says goodbye (1000) ends its session, and frees the export for the next writer.
    if (this.session) this.terms.sessions.release(this.session, this, code === CloseCode.Normal);
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    this.heard = true;
    if (this.terms.faults.active && this.link && this.state === 'ready') return this.link.receive(data);
    this.handle(data, isBinary);
  }

  private handle(data: Buffer, isBinary: boolean): void {
    if (this.state === 'closed' || this.state === 'draining') return;
    if (!isBinary) return this.closeWith(CloseCode.Malformed, 'text messages are not part of the protocol');
    let msg;
    try {
      msg = decodeMessage(data, { maxPayload: LIMITS.maxPayloadCeiling });
    } catch (e) {
      if (e instanceof ProtocolError) return this.closeWith(CloseCode.Malformed, `malformed message: ${e.message}`);
      // A decoder bug must cost this connection, not the server (a throw here is uncaught).
      log.error(`${this.peer}: decoder failed: ${(e as Error).stack ?? e}`);
      return this.closeWith(CloseCode.Malformed, 'malformed message');
    }
    if (this.state === 'hello') {
      if (msg.kind !== 'hello') return this.closeWith(CloseCode.BadHello, `expected hello, got ${msg.kind}`);
      return this.onHello(msg.hello);
    }
    if (msg.kind !== 'requests') return this.closeWith(CloseCode.Malformed, `unexpected ${msg.kind} message`);
    if (this.state !== 'ready') return this.closeWith(CloseCode.Malformed, 'request before welcome');
    this.transmission!.receive(msg.requests);
  }

  private onHello(hello: Hello): void {
    this.state = 'fencing';
    clearTimeout(this.helloTimer);
    const refused = (e: unknown) => {
      if (!(e instanceof Refusal)) throw e;
      if (this.state === 'fencing') this.closeWith(e.code, e.message);
    };
    try {
      const admitted = admit(hello, this.exp, this.grantReadOnly, this.terms.sessions, this, this.peer);
      if (admitted instanceof Promise) void admitted.then((a) => this.admitted(a), refused);
      else this.admitted(admitted);
    } catch (e) {
      refused(e);
    }
  }

  private admitted(a: Admission): void {
    // The session is ours from takeOver on: a close while the fence waits releases it.
    this.session = a.session;
    if (this.state !== 'fencing') {
      // Closed while a steal waited: nobody learnt the new session's id, so it ends now.
      this.terms.sessions.release(a.session, this, true);
      return;
    }
    if (!a.fenced) return this.welcome(a);
    void a.fenced.then(() => {
      if (this.state === 'fencing') this.welcome(a);
    });
  }

  private welcome(a: Admission): void {
    const link = new LinkFaults(this.terms.faults, this.ws, this.exp.name, a.session.id, a.session.clientId,
      (data) => this.handle(data, true), () => this.transmission?.onSent());
    this.link = link;
    this.transmission = new Transmission(this.ws, this.exp, a, this.terms.budget,
      (reason) => this.closeWith(CloseCode.Malformed, reason), this.peer, this.terms.faults, link);
    this.state = 'ready';
    this.ws.send([encodeWelcome(welcomeOf(this.exp, a))]);
  }
}
