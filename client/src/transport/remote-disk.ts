import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { ConnectionOptions } from 'node:tls';
import {
  CloseCode, Errno, FLAG_NO_UNMAP, LIMITS, Op, PROTOCOL_VERSION, ProtocolError, SUBPROTOCOL, WsHandshakeError,
  bufferPool, decodeMessage, encodeHello, encodeRequests, isAllZero, logger, microtask, wsConnect,
  type BlockReply, type BlockRequest, type Welcome, type WsConn,
} from '@wsblk/shared';
import { sendv } from '@wsblk/native';
import type { BlockTarget, DiskInfo, IoCallback, IoRequest } from '../target.js';
import { InflightTable, type InflightEntry } from './inflight.js';

const log = logger('transport');

export interface RemoteDiskOptions {
  /** ws[s]://host:port/<export> */
  url: string;
  /** Bearer token sent at the upgrade. */
  token?: string;
  compress?: 'lz4' | 'none';
  clientId?: string;
  /** Session to resume on the first connect (a restarted daemon taking over its device). */
  resumeSession?: string;
  /** First connect gives up after this long (ms); 0 = never. Default 30 s. */
  connectTimeoutMs?: number;
  /** Pending I/O fails with EIO after this long (ms); 0 waits forever, like a local disk. */
  ioTimeoutMs?: number;
  /** Bytes of requests on the wire at once (backpressure). Default 64 MiB. */
  maxInflightBytes?: number;
  /** Largest READ/WRITE asked for; the server may lower it. Default 4 MiB. */
  maxPayload?: number;
  /** Reconnect backoff: first delay and cap (ms). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** TLS options for wss:// (ca, rejectUnauthorized); by default Node's trust store. */
  tls?: ConnectionOptions;
  /**
   * READ data passed to a callback is lent, valid only during the callback: large replies are
   * read into buffers of `bufferPool`, which go back to it when the callback returns. A caller
   * that keeps the data longer calls bufferPool.retain(data), then bufferPool.release(data).
   * The frontends do (no 1 MiB buffer of garbage per 1 MiB READ). Default false: data is kept.
   */
  lendReads?: boolean;
}

/** Why a connect attempt failed, in one line for a person. */
export class ConnectError extends Error {
  override name = 'ConnectError';
  constructor(message: string, readonly status?: number, readonly fatal = false) {
    super(message);
  }
}

export interface TransportStats {
  connected: boolean;
  sessionId: string;
  epoch: number;
  inflight: number;
  inflightBytes: number;
  reconnects: number;
  replayed: number;
  timedOut: number;
  /** Requests sent (replays included) and the messages that carried them: their ratio is the batch size. */
  requestsSent: number;
  messagesSent: number;
  /** Replies received and the messages that carried them. */
  repliesReceived: number;
  messagesReceived: number;
}

/** TLS verification failures (Node's codes): a configuration problem, not a transient one. */
const TLS_TRUST_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Largest batch message (payload bytes) the client builds. */
const MAX_BATCH_BYTES = 16 << 20;
/** Largest message accepted from the server (it closes a reply message at 256 KiB of data, plus one reply of up to maxPayload). */
const MAX_MESSAGE = 64 << 20;

/**
 * The client transport: one remote export over one WebSocket at a time. It keeps every
 * request until the server answers it; on a lost connection it reconnects with capped
 * exponential backoff, resumes the session (the server fences the old connection) and
 * replays what is outstanding, in order. Emits 'connected' (welcome), 'disconnected' (reason),
 * 'fenced' (another client took the session over: this one stops).
 */
export class RemoteDisk extends EventEmitter implements BlockTarget {
  info!: DiskInfo;
  private ws: WsConn | undefined;
  private welcome: Welcome | undefined;
  private readonly table: InflightTable;
  private readonly lz4: boolean;
  private readonly clientId: string;
  private nextSeq = 1;
  private sessionId: string;
  private epoch = 0;
  private ready = false;
  private flushQueued = false;
  /** When the first request of the current turn came (while flushQueued). */
  private turnStart = 0;
  private closed = false;
  private stopped = false;
  private reconnects = 0;
  private replayed = 0;
  private timedOut = 0;
  private requestsSent = 0;
  private messagesSent = 0;
  private repliesReceived = 0;
  private messagesReceived = 0;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private ioTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private alive = true;
  private readonly sendBuf: InflightEntry[] = [];
  private readonly flushNow = (): void => this.flush();
  private readonly reqBuf: BlockRequest[] = [];

  private constructor(private readonly opts: RemoteDiskOptions) {
    super();
    this.table = new InflightTable(opts.maxInflightBytes ?? 64 << 20);
    this.lz4 = opts.compress === 'lz4';
    this.clientId = opts.clientId ?? `${hostname()}:${process.pid}`;
    this.sessionId = opts.resumeSession ?? '';
  }

  /** Connects and waits for the welcome. Rejects with a ConnectError that says why. */
  static async connect(opts: RemoteDiskOptions): Promise<RemoteDisk> {
    const url = parseUrl(opts.url);
    const disk = new RemoteDisk({ ...opts, url: withPort(url) });
    const timeoutMs = opts.connectTimeoutMs ?? 30_000;
    // 0 waits for the server forever (a recovering daemon: the kernel holds the I/O meanwhile).
    const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
    let last: ConnectError | undefined;
    // The first connect retries transient failures (refused, reset) until the timeout;
    // a refusal by the server (401/403/404, bad protocol) is final at once.
    for (;;) {
      try {
        await disk.open(Math.max(1, Math.min(deadline - Date.now(), 30_000)));
        break;
      } catch (e) {
        last = e instanceof ConnectError ? e : new ConnectError((e as Error).message);
        if (last.fatal || Date.now() + 200 >= deadline) {
          disk.stopped = true;
          throw last.fatal || timeoutMs === 0 ? last : new ConnectError(`${last.message} (gave up after ${timeoutMs / 1000} s)`, last.status);
        }
        // Never sleep past the deadline: connectTimeoutMs bounds the whole connect.
        await new Promise((r) => setTimeout(r, Math.min(1000, 100 * 2 ** disk.attempt++, deadline - Date.now() - 200)));
      }
    }
    disk.attempt = 0;
    disk.startTimers();
    return disk;
  }

  get stats(): TransportStats {
    return {
      connected: this.ready,
      sessionId: this.sessionId,
      epoch: this.epoch,
      inflight: this.table.size,
      inflightBytes: this.table.bytesInFlight,
      reconnects: this.reconnects,
      replayed: this.replayed,
      timedOut: this.timedOut,
      requestsSent: this.requestsSent,
      messagesSent: this.messagesSent,
      repliesReceived: this.repliesReceived,
      messagesReceived: this.messagesReceived,
    };
  }

  get url(): string {
    return this.opts.url;
  }

  submit(req: IoRequest, cb: IoCallback): void {
    if (this.closed || this.stopped) {
      // Fenced (stopped, not closed): nothing will ever send it, so fail it as in-flight ones were.
      process.nextTick(cb, this.closed ? Errno.ESHUTDOWN : Errno.EIO);
      return;
    }
    // An all-zero write travels as WRITE_ZEROES (keeping the blocks allocated, as a write would).
    if (req.op === Op.Write && req.payload && this.info.writeZeroes && isAllZero(req.payload)) {
      req = { op: Op.WriteZeroes, offset: req.offset, length: req.length, flags: req.flags | FLAG_NO_UNMAP };
    }
    const bytes = req.op === Op.Write || req.op === Op.Read ? req.length : 0;
    // One clock read per turn, not per request: the requests of one delivery share it (the I/O
    // timeout counts seconds), and where the kernel has no vDSO clock (the test VM) it is a
    // system call.
    const since = this.flushQueued ? this.turnStart : (this.turnStart = performance.now());
    this.table.add({ seq: this.nextSeq++, req, cb, bytes, sent: false, since });
    this.scheduleFlush();
  }

  /**
   * Stops: waits for outstanding requests (up to `timeoutMs`), fails what is left with
   * ESHUTDOWN, and closes the connection. No reconnect after this.
   */
  async close(timeoutMs = 30_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const deadline = Date.now() + timeoutMs;
    while (this.table.size > 0 && Date.now() < deadline && !this.stopped) {
      await new Promise((r) => setTimeout(r, 10));
    }
    this.stopped = true;
    const ws = this.ws;
    const left = this.table.drainAll();
    // A failed WRITE must not leave later from the socket's queue (see the I/O timeout).
    if (ws && ws.socket.writableLength > 0 && left.some((e) => e.sent && e.req.op === Op.Write)) ws.terminate();
    for (const e of left) e.cb(Errno.ESHUTDOWN);
    this.stopTimers();
    if (ws && ws.isOpen) {
      // The close handshake; WsConn cuts the socket after 1 s without an answer.
      await new Promise<void>((r) => {
        ws.onclose = () => r();
        ws.close(CloseCode.Normal, 'client closing');
      });
    } else {
      ws?.terminate();
    }
    this.ready = false;
    this.ws = undefined;
  }

  // --- connection -------------------------------------------------------------------------

  private async open(timeoutMs: number): Promise<void> {
    const headers: Record<string, string> = {};
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    const url = this.opts.url;
    const t0 = Date.now();
    let ws: WsConn;
    try {
      ws = await wsConnect({
        url: new URL(url), protocol: SUBPROTOCOL, headers, maxMessage: MAX_MESSAGE, closeTimeoutMs: 1000,
        // Frames go straight to the socket while nothing waits in its queue (bench/RESULTS.md, lever 19).
        sendv,
        timeoutMs: Math.min(timeoutMs, 30_000), ...(this.opts.tls ? { tls: this.opts.tls } : {}),
        ...(this.opts.lendReads ? { pool: bufferPool } : {}),
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
      ws.onclose = (code, reason) => fail(new ConnectError(`${url} closed the connection during the handshake (${code} ${reason})`, undefined, code === CloseCode.BadHello));
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
        if (this.welcome && (welcome.size !== this.welcome.size || welcome.blockSize !== this.welcome.blockSize)) {
          return fail(new ConnectError(`${url}: the export changed size or block size (${this.welcome.size} -> ${welcome.size}); refusing to replay onto it`, undefined, true));
        }
        // close() ran while this reconnect was under way: do not bring the connection to life.
        if (this.stopped) return fail(new ConnectError(`${url}: transport closed`, undefined, true));
        settled = true;
        clearTimeout(timer);
        this.attach(ws, welcome);
        resolve();
      };
      ws.start();
      ws.send([encodeHello({
        version: PROTOCOL_VERSION,
        clientId: this.clientId,
        ...(this.sessionId ? { resume: this.sessionId } : {}),
        features: this.lz4 ? ['lz4'] : [],
        maxPayload: this.opts.maxPayload ?? LIMITS.maxPayloadDefault,
      })]);
    });
  }

  private attach(ws: WsConn, welcome: Welcome): void {
    const first = !this.welcome;
    this.ws = ws;
    this.welcome = welcome;
    this.info = {
      exportName: welcome.exportName, size: welcome.size, blockSize: welcome.blockSize,
      readOnly: welcome.readOnly, flush: welcome.flush, fua: welcome.fua, discard: welcome.discard,
      writeZeroes: welcome.writeZeroes, maxPayload: welcome.maxPayload,
    };
    if (this.sessionId && this.sessionId !== welcome.sessionId) {
      log.warn(`session ${this.sessionId.slice(0, 8)} was not resumed (server restarted?); new session ${welcome.sessionId.slice(0, 8)}`);
    }
    this.sessionId = welcome.sessionId;
    this.epoch = welcome.epoch;
    if (welcome.nextSeq > this.nextSeq) this.nextSeq = welcome.nextSeq;
    this.alive = true;
    ws.onmessage = (data, isBinary) => this.onMessage(ws, data, isBinary);
    ws.onpong = () => { this.alive = true; };
    ws.onclose = (code, reason) => this.onClose(ws, code, reason);
    // Replay: everything not completed goes again, in sequence order, before new requests.
    this.table.requeueAll();
    const replay = this.table.size;
    if (!first) this.reconnects++;
    if (!first && replay) {
      this.replayed += replay;
      log.info(`reconnected (session ${welcome.sessionId.slice(0, 8)} epoch ${welcome.epoch}, ${welcome.resumed ? 'resumed' : 'new'}); replaying ${replay} requests`);
    }
    this.ready = true;
    this.emit('connected', welcome);
    this.flush();
  }

  private onClose(ws: WsConn, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ready = false;
    this.ws = undefined;
    if (this.stopped) return;
    if (code === CloseCode.Fenced) {
      log.error(`fenced: another client resumed session ${this.sessionId.slice(0, 8)}; this one stops`);
      this.stopped = true;
      for (const e of this.table.drainAll()) e.cb(Errno.EIO);
      this.emit('fenced');
      return;
    }
    log.warn(`connection lost (${code}${reason ? ' ' + reason : ''}); ${this.table.size} requests outstanding`);
    this.emit('disconnected', reason || String(code));
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const initial = this.opts.backoffInitialMs ?? 100;
    const max = this.opts.backoffMaxMs ?? 5_000;
    const delay = Math.min(max, initial * 2 ** Math.min(this.attempt, 20));
    // Jitter keeps many clients of one restarted server from reconnecting in lockstep.
    const jittered = Math.round(delay * (0.75 + Math.random() * 0.5));
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.stopped) return;
      this.open(Math.max(5_000, max)).then(
        () => { this.attempt = 0; },
        (err: ConnectError) => {
          if (this.stopped) return;
          log.warn(`reconnect failed: ${err.message}`);
          this.scheduleReconnect();
        },
      );
    }, jittered);
  }

  // --- data -------------------------------------------------------------------------------

  private scheduleFlush(): void {
    if (this.flushQueued || !this.ready) return;
    this.flushQueued = true;
    // Same turn as a nextTick, without its tick object and tick queue (lever 20).
    microtask(this.flushNow);
  }

  /** Sends everything the budget allows, as few messages as the batch limits allow. */
  private flush(): void {
    this.flushQueued = false;
    const ws = this.ws;
    if (!this.ready || !ws) return;
    const out = this.sendBuf;
    this.table.takeSendable(out);
    if (out.length === 0) return;
    const reqs = this.reqBuf;
    let bytes = 0;
    for (let i = 0; i < out.length; i++) {
      const e = out[i]!;
      reqs.push({ seq: e.seq, op: e.req.op, flags: e.req.flags, offset: e.req.offset, length: e.req.length, payload: e.req.payload });
      bytes += e.req.op === Op.Write ? e.req.length : 0;
      if (reqs.length === LIMITS.maxRecords || bytes >= MAX_BATCH_BYTES || i === out.length - 1) {
        ws.send(encodeRequests(reqs, this.lz4));
        this.requestsSent += reqs.length;
        this.messagesSent++;
        reqs.length = 0;
        bytes = 0;
      }
    }
    out.length = 0;
  }

  private onMessage(ws: WsConn, data: Buffer, isBinary: boolean): void {
    if (ws !== this.ws) return;
    this.alive = true;
    let replies: BlockReply[];
    try {
      if (!isBinary) throw new ProtocolError('text message');
      const msg = decodeMessage(data, { maxPayload: this.info.maxPayload });
      if (msg.kind !== 'replies') throw new ProtocolError(`unexpected ${msg.kind} message`);
      replies = msg.replies;
      this.messagesReceived++;
      this.repliesReceived += replies.length;
    } catch (e) {
      log.error(`bad message from server: ${(e as Error).message}; reconnecting`);
      ws.close(CloseCode.Malformed, 'malformed message');
      return;
    }
    for (const rep of replies) {
      const e = this.table.complete(rep.seq);
      if (!e) continue; // timed out already, or answered twice across a reconnect
      let status = rep.status;
      if (status === 0 && e.req.op === Op.Read && rep.data?.length !== e.req.length) {
        log.error(`READ ${e.req.offset}+${e.req.length}: server sent ${rep.data?.length ?? 0} bytes`);
        status = Errno.EIO;
      }
      e.cb(status, status === 0 ? rep.data : undefined);
    }
    this.flush();
  }

  private startTimers(): void {
    const ioTimeout = this.opts.ioTimeoutMs ?? 0;
    if (ioTimeout > 0) {
      this.ioTimer = setInterval(() => {
        const late = this.table.olderThan(performance.now() - ioTimeout);
        if (late.length === 0) return;
        // A failed WRITE whose frame still waits in the socket's queue (the kernel took only part
        // of it) would leave later with whatever its buffer holds by then (a ublk tag buffer or a
        // pooled payload is reused once the callback ran): cut the connection first, which drops
        // that queue; the rest is replayed.
        const ws = this.ws;
        if (ws && ws.socket.writableLength > 0 && late.some((e) => e.sent && e.req.op === Op.Write)) {
          log.warn('dropping the connection: a timed-out write may still be queued on it');
          ws.terminate();
        }
        for (const e of late) {
          this.table.complete(e.seq);
          this.timedOut++;
          e.cb(Errno.EIO);
        }
        log.warn(`${late.length} requests failed with EIO after the ${ioTimeout / 1000} s I/O timeout`);
      }, Math.min(1000, ioTimeout));
      this.ioTimer.unref();
    }
    // Keepalive: a half-open connection (cut cable, dead NAT) is noticed within ~20 s.
    this.pingTimer = setInterval(() => {
      const ws = this.ws;
      if (!ws || !this.ready) return;
      if (!this.alive) {
        log.warn('no answer to keepalive; dropping the connection');
        ws.terminate();
        return;
      }
      this.alive = false;
      ws.ping();
    }, 10_000);
    this.pingTimer.unref();
  }

  private stopTimers(): void {
    clearInterval(this.ioTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.reconnectTimer);
  }
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

/** The URL as text with its port always written out (URL drops a scheme's default port). */
function withPort(url: URL): string {
  if (url.port) return url.href;
  const user = url.username ? `${url.username}${url.password ? ':' + url.password : ''}@` : '';
  return `${url.protocol}//${user}${url.hostname}:${url.protocol === 'wss:' ? 443 : 80}${url.pathname}${url.search}`;
}

/** Validates a ws[s]:// URL with an export path. */
export function parseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConnectError(`'${text}' is not a URL (expected ws://HOST:PORT/EXPORT)`, undefined, true);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new ConnectError(`'${text}': scheme must be ws:// or wss://`, undefined, true);
  }
  if (url.pathname.replace(/^\/+/, '') === '') {
    throw new ConnectError(`'${text}': no export name (expected ws://HOST:PORT/EXPORT)`, undefined, true);
  }
  // No port: 7690. An explicit port stays, even the scheme's default (ws://host:80/x), which
  // URL drops from url.port; wsConnect then uses the scheme's default.
  if (!url.port && !/^wss?:\/\/(?:[^@/]*@)?(?:\[[^\]]*\]|[^:/?#]*):\d+(?:[/?#]|$)/i.test(text.trim())) url.port = '7690';
  return url;
}
