import { CloseCode, LIMITS, ProtocolError, decodeMessage, encodeWelcome, logger, type Hello, type WsConn } from '@wsblk/shared';
import type { Session } from '../session/session.js';
import type { SessionTable } from '../session/session-table.js';
import { admit, welcomeOf, type Admission, type ExportHandle } from './handshake.js';
import { Transmission } from './transmission.js';

const log = logger('server');

type State = 'hello' | 'fencing' | 'ready' | 'draining' | 'closed';

/**
 * One client WebSocket and its phases: the handshake (hello -> fence -> welcome), then the
 * transmission (requests in, replies out). Owns the socket and the state; the phases do the work.
 */
export class ServerConnection {
  private state: State = 'hello';
  private session: Session | undefined;
  private transmission: Transmission | undefined;
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;

  constructor(
    private readonly ws: WsConn,
    private readonly exp: ExportHandle,
    private readonly grantReadOnly: boolean,
    private readonly sessions: SessionTable,
    private readonly peer: string,
  ) {
    ws.onmessage = (data, isBinary) => this.onMessage(data, isBinary);
    this.closed = new Promise((resolve) => {
      ws.onclose = (code, reason) => {
        log.debug(`${peer}: closed (${code}${reason ? ' ' + reason : ''})`);
        this.onClose();
        resolve();
      };
    });
    ws.start();
  }

  /** Cuts the socket (after close() had its chance). */
  terminate(): void {
    this.ws.terminate();
  }

  /** Called by the session when a newer connection resumes it. */
  fence(): void {
    if (this.state === 'closed') return;
    log.info(`${this.peer}: fenced by a newer connection of session ${this.session?.id.slice(0, 8)}`);
    this.toClosed();
    // The close handshake of a connection that may be half-open waits 1 s at most (WsConn).
    this.ws.close(CloseCode.Fenced, 'fenced by a newer connection');
  }

  /** Graceful stop (SIGTERM): stop taking requests, finish running ones, send their replies. */
  async drain(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'draining';
    const t = this.transmission;
    if (t) {
      await t.idle();
      t.flush();
    }
    this.ws.close(CloseCode.GoingAway, 'server shutting down');
  }

  private toClosed(): void {
    this.state = 'closed';
    this.transmission?.stop();
  }

  private closeWith(code: CloseCode, reason: string): void {
    log.warn(`${this.peer}: closing: ${reason}`);
    this.toClosed();
    this.ws.close(code, reason);
  }

  private onClose(): void {
    if (this.state !== 'closed') this.toClosed();
    if (this.session) this.sessions.release(this.session, this);
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
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
    const admitted = admit(hello, this.exp, this.grantReadOnly, this.sessions, this, this.peer);
    if (admitted instanceof Promise) void admitted.then((a) => this.admitted(a));
    else this.admitted(admitted);
  }

  private admitted(a: Admission): void {
    // The session is ours from takeOver on: a close while the fence waits releases it.
    this.session = a.session;
    if (!a.fenced) return this.welcome(a);
    void a.fenced.then(() => {
      if (this.state === 'fencing') this.welcome(a);
    });
  }

  private welcome(a: Admission): void {
    this.session = a.session;
    this.transmission = new Transmission(this.ws, this.exp, a, this.peer);
    this.state = 'ready';
    this.ws.send([encodeWelcome(welcomeOf(this.exp, a))]);
  }
}
