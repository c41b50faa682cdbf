// One connection to one server: the upgrade, hello and welcome, keepalive, decoding replies and
// sending request batches. It knows nothing of requests in flight or of reconnecting: RemoteDisk
// owns those, so that a replica set can later hold one such connection per server.
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import {
  CloseCode, ProtocolError, SUBPROTOCOL, WsHandshakeError, bufferPool, decodeMessage, encodeHello, encodeRequests,
  logger, wsConnect, type BlockReply, type BlockRequest, type Hello, type Welcome, type WsConn,
} from '@wsblk/shared';
import { sendv } from '@wsblk/native';

const log = logger('transport');

/** Why a connect attempt failed, in one line for a person. */
export class ConnectError extends Error {
  override name = 'ConnectError';
  /**
   * status: the HTTP status of a refused upgrade; fatal: retrying cannot help; closeCode: the
   * WebSocket close code (and its reason) when the server closed the connection instead of welcoming it.
   */
  constructor(message: string, readonly status?: number, readonly fatal = false, readonly closeCode?: number, readonly closeReason?: string) {
    super(message);
  }
}

/** TLS verification failures (Node's codes): a configuration problem, not a transient one. */
const TLS_TRUST_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Largest message accepted from the server (it closes a reply message at 256 KiB of data, plus one reply of up to maxPayload). */
const MAX_MESSAGE = 64 << 20;
/** Keepalive: a half-open connection (cut cable, dead NAT) is noticed within ~20 s. */
const PING_INTERVAL_MS = 10_000;

/** Close codes after which the server will refuse this client again: the device stops. */
export const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([CloseCode.Fenced, CloseCode.WriterBusy, CloseCode.BadSecret]);

export interface ServerConnectionOptions {
  /** ws[s]://host:port/<export>, without credentials. */
  url: string;
  /** Bearer token sent at the upgrade. */
  token?: string;
  tls?: TlsOptions;
  /** Large replies are read into bufferPool buffers, lent to `replies` only during the call. */
  lendReads?: boolean;
  /** Gives up waiting for the welcome after this long (ms). */
  timeoutMs: number;
}

/** What a connection tells its owner. Each runs synchronously from the socket's events. */
export interface ConnectionEvents {
  /** The welcome came: return why it is refused, or undefined to go on (nothing else arrives before). */
  welcome(conn: ServerConnection, welcome: Welcome): ConnectError | undefined;
  replies(conn: ServerConnection, replies: BlockReply[]): void;
  /** Once, after the welcome, when the connection is gone (`code` 1006: cut without a close frame). */
  closed(conn: ServerConnection, code: number, reason: string): void;
}

/**
 * A live connection to one server, after its welcome. Sending never blocks: a frame the
 * kernel does not take at once waits in the socket's queue, and the payloads it names are
 * retained (bufferPool) until that queue has drained or the socket is gone, so whoever owns
 * them may complete the request meanwhile without the bytes changing under the socket.
 */
export class ServerConnection {
  private alive = true;
  private closedOnce = false;
  private readonly pingTimer: NodeJS.Timeout;
  /** Payloads of frames still in the socket's queue (retained). */
  private held: Buffer[] = [];

  private constructor(
    private readonly ws: WsConn,
    readonly welcome: Welcome,
    readonly url: string,
    private readonly events: ConnectionEvents,
  ) {
    ws.onmessage = (data, isBinary) => this.onMessage(data, isBinary);
    ws.onpong = () => { this.alive = true; };
    ws.ondrain = () => this.releaseHeld();
    ws.onclose = (code, reason) => this.onClose(code, reason);
    this.pingTimer = setInterval(() => this.keepalive(), PING_INTERVAL_MS);
    this.pingTimer.unref();
  }

  /** Upgrades, says hello and waits for the welcome. Rejects with a ConnectError that says why. */
  static async open(opts: ServerConnectionOptions, hello: Hello, events: ConnectionEvents): Promise<ServerConnection> {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const { url, timeoutMs } = opts;
    const t0 = Date.now();
    let ws: WsConn;
    try {
      ws = await wsConnect({
        url: new URL(url), protocol: SUBPROTOCOL, headers, maxMessage: MAX_MESSAGE, closeTimeoutMs: 1000,
        // Frames go straight to the socket while nothing waits in its queue (bench/RESULTS.md, lever 19).
        sendv,
        // WsConn bounds this end too: no reading past 16 MiB unsent, a stalled frame closed after 30 s.
        timeoutMs: Math.min(timeoutMs, 30_000), ...(opts.tls ? { tls: opts.tls } : {}),
        ...(opts.lendReads ? { pool: bufferPool } : {}),
      });
    } catch (e) {
      throw connectErrorOf(url, e as Error);
    }
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: ConnectError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.onmessage = () => {};
        ws.onclose = () => {};
        ws.terminate();
        reject(err);
      };
      const left = Math.max(1, timeoutMs - (Date.now() - t0));
      const timer = setTimeout(() => fail(new ConnectError(`no welcome from ${url} within ${Math.round(timeoutMs / 1000)} s`)), left);
      ws.onclose = (code, reason) => fail(handshakeCloseError(url, code, reason));
      ws.onmessage = (data, isBinary) => {
        let welcome: Welcome;
        try {
          if (!isBinary) throw new ProtocolError('text message');
          const msg = decodeMessage(data);
          if (msg.kind !== 'welcome') throw new ProtocolError(`expected welcome, got ${msg.kind}`);
          welcome = msg.welcome;
        } catch (e) {
          return fail(new ConnectError(`${url}: bad welcome: ${(e as Error).message}`, undefined, true));
        }
        settled = true;
        clearTimeout(timer);
        const conn = new ServerConnection(ws, welcome, url, events);
        const refused = events.welcome(conn, welcome);
        if (refused) {
          settled = false;
          conn.stop();
          return fail(refused);
        }
        resolve(conn);
      };
      ws.start();
      ws.send([encodeHello(hello)]);
    });
  }

  get isOpen(): boolean {
    return this.ws.isOpen;
  }

  /** Bytes written that the kernel has not taken yet. */
  get bufferedBytes(): number {
    return this.ws.bufferedBytes;
  }

  /** Sends one batch of requests as one message. */
  send(reqs: readonly BlockRequest[], lz4: boolean): void {
    const ws = this.ws;
    // Nothing queued now: every frame sent before has left, and its payloads with it.
    if (this.held.length > 0 && ws.bufferedBytes === 0) this.releaseHeld();
    ws.send(encodeRequests(reqs, lz4));
    if (ws.bufferedBytes === 0) return;
    // The kernel did not take it all: the socket's queue keeps views of these payloads.
    for (let i = 0; i < reqs.length; i++) {
      const p = reqs[i]!.payload;
      if (p) {
        bufferPool.retain(p);
        this.held.push(p);
      }
    }
  }

  /** The close handshake; resolves once the socket is closed (WsConn cuts it after 1 s without an answer). */
  close(code: number, reason: string): Promise<void> {
    this.stop();
    const ws = this.ws;
    if (!ws.isOpen) {
      ws.terminate();
      this.releaseHeld();
      return Promise.resolve();
    }
    return new Promise<void>((r) => {
      ws.onclose = () => { this.releaseHeld(); r(); };
      ws.close(code, reason);
    });
  }

  /** Cuts the socket now (its queue is dropped); `closed` follows. */
  terminate(): void {
    this.ws.terminate();
  }

  /** No events to the owner any more. */
  private stop(): void {
    this.closedOnce = true;
    clearInterval(this.pingTimer);
  }

  private keepalive(): void {
    if (!this.ws.isOpen) return;
    if (!this.alive) {
      log.warn('no answer to keepalive; dropping the connection');
      this.ws.terminate();
      return;
    }
    this.alive = false;
    this.ws.ping();
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.closedOnce) return;
    this.alive = true;
    let replies: BlockReply[];
    try {
      if (!isBinary) throw new ProtocolError('text message');
      const msg = decodeMessage(data, { maxPayload: this.welcome.maxPayload });
      if (msg.kind !== 'replies') throw new ProtocolError(`unexpected ${msg.kind} message`);
      replies = msg.replies;
    } catch (e) {
      log.error(`bad message from server: ${(e as Error).message}; reconnecting`);
      this.ws.close(CloseCode.Malformed, 'malformed message');
      return;
    }
    this.events.replies(this, replies);
  }

  private onClose(code: number, reason: string): void {
    this.releaseHeld();
    if (this.closedOnce) return;
    this.stop();
    this.events.closed(this, code, reason);
  }

  private releaseHeld(): void {
    const held = this.held;
    if (held.length === 0) return;
    this.held = [];
    for (let i = 0; i < held.length; i++) bufferPool.release(held[i]!);
  }
}

/** The server closed the connection instead of welcoming it: why, and whether that is final. */
function handshakeCloseError(url: string, code: number, reason: string): ConnectError {
  const why = `${code}${reason ? ' ' + reason : ''}`;
  if (code === CloseCode.WriterBusy) {
    // The server's reason names the holder and says how to take over; an older server's may not.
    const hint = /--steal/.test(reason) ? '' : ' (--steal takes the export over)';
    return new ConnectError(`${url}: refused: ${reason || 'the export has another writer'}${hint}`, undefined, true, code, reason);
  }
  if (code === CloseCode.BadSecret) return new ConnectError(`${url}: refused: the session's secret does not match (${why})`, undefined, true, code, reason);
  if (code === CloseCode.Fenced) return new ConnectError(`${url}: refused: this session was taken over (${why})`, undefined, true, code, reason);
  return new ConnectError(`${url} closed the connection during the handshake (${why})`, undefined, code === CloseCode.BadHello, code, reason);
}

/** A handshake failure as a ConnectError: one line for a person, and whether retrying can help. */
function connectErrorOf(url: string, err: Error): ConnectError {
  if (!(err instanceof WsHandshakeError)) return new ConnectError(`cannot connect to ${url}: ${err.message}`);
  const status = err.status;
  if (status !== undefined && status !== 101) {
    const why = err.body?.trim() || err.message;
    const fatal = status === 400 || status === 401 || status === 403 || status === 404;
    const what = status === 401 ? 'token refused' : status === 403 ? 'forbidden' : status === 404 ? 'unknown export' : `HTTP ${status}`;
    return new ConnectError(`${url}: ${what}: ${why}`, status, fatal);
  }
  if (status === 101) return new ConnectError(`${url}: ${err.message}`, undefined, true);
  // A certificate the client does not trust will not become trusted by retrying: final.
  const code = err.code ?? '';
  const tls = TLS_TRUST_ERRORS.has(code);
  const text = code === 'ECONNREFUSED' ? 'connection refused (is the server running?)'
    : code === 'ENOTFOUND' ? 'host not found'
    : code === 'ECONNRESET' && url.startsWith('ws:') ? 'connection reset (is it a wss:// server?)'
    : tls ? `the server's TLS certificate is not trusted: ${err.message} (trust its CA with NODE_EXTRA_CA_CERTS=FILE)`
    : code || err.message;
  if (code === 'ETIMEDOUT') return new ConnectError(`${url}: ${err.message}`);
  return new ConnectError(`cannot connect to ${url}: ${text}`, undefined, tls);
}
