import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { ConnectionOptions } from 'node:tls';
import {
  CloseCode, Errno, FLAG_NO_UNMAP, LIMITS, Op, PROTOCOL_VERSION, isAllZero, logger, microtask,
  type BlockReply, type BlockRequest, type Welcome,
} from '@wsblk/shared';
import type { BlockTarget, DiskInfo, IoCallback, IoRequest } from '../target.js';
import { ConnectError, FINAL_CLOSE_CODES, ServerConnection, type ConnectionEvents } from './connection.js';
import { InflightTable, type InflightEntry } from './inflight.js';
import { Backoff } from './reconnect.js';
import { parseUrl, splitCredentials, withPort } from './url.js';

export { ConnectError } from './connection.js';
export { parseUrl } from './url.js';

const log = logger('transport');

export interface RemoteDiskOptions {
  /** ws[s]://host:port/<export>; credentials in it (ws://user:token@...) are the token, and are dropped from it. */
  url: string;
  /** Bearer token sent at the upgrade (wins over one in the URL). */
  token?: string;
  compress?: 'lz4' | 'none';
  clientId?: string;
  /** Session to resume on the first connect (a restarted daemon taking over its device). */
  resumeSession?: string;
  /** The session's secret (hex), sent in every hello: a resume of the session must show it. */
  secret?: string;
  /** Attach read-only: never the export's writer; writes fail here with EPERM. */
  readOnly?: boolean;
  /** First connect only: take the export over from its current writer (the server fences it). */
  steal?: boolean;
  /** While the first connect retries, called every few seconds with one line: why, and for how long. */
  onWait?: (line: string) => void;
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

/** Largest batch message (payload bytes) the client builds. */
const MAX_BATCH_BYTES = 16 << 20;
/** When a first connect that keeps failing first says so (onWait), and how often after that. */
const WAIT_FIRST_NOTE_MS = 2_000;
const WAIT_NOTE_MS = 5_000;
/**
 * The client transport: one remote export over one connection at a time. It composes a
 * ServerConnection (hello, welcome, keepalive, decode, send), the InflightTable (what is
 * outstanding, and so what is replayed) and a Backoff (when to reconnect). It keeps every
 * request until the server answers it; on a lost connection it reconnects, resumes the
 * session (the server fences the old connection) and replays what is outstanding, in order.
 * Emits 'connected' (welcome), 'disconnected' (reason), 'fenced' (why: the server will not
 * take this client back, e.g. another client took the session or the export over: this one stops).
 */
export class RemoteDisk extends EventEmitter implements BlockTarget {
  info!: DiskInfo;
  private conn: ServerConnection | undefined;
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
  private readonly backoff: Backoff;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private ioTimer: NodeJS.Timeout | undefined;
  private readonly sendBuf: InflightEntry[] = [];
  private readonly flushNow = (): void => this.flush();
  private readonly reqBuf: BlockRequest[] = [];
  private readonly events: ConnectionEvents = {
    welcome: (conn, welcome) => this.attach(conn, welcome),
    replies: (conn, replies) => this.onReplies(conn, replies),
    closed: (conn, code, reason) => this.onClose(conn, code, reason),
  };

  private constructor(private readonly opts: RemoteDiskOptions) {
    super();
    this.table = new InflightTable(opts.maxInflightBytes ?? 64 << 20);
    this.lz4 = opts.compress === 'lz4';
    this.clientId = opts.clientId ?? `${hostname()}:${process.pid}`;
    this.sessionId = opts.resumeSession ?? '';
    this.backoff = new Backoff({ initialMs: opts.backoffInitialMs ?? 100, maxMs: opts.backoffMaxMs ?? 5_000, jitter: true, giveUpAfterMs: 0 });
  }

  /** Connects and waits for the welcome. Rejects with a ConnectError that says why. */
  static async connect(opts: RemoteDiskOptions): Promise<RemoteDisk> {
    const plain = splitCredentials(opts.url);
    const url = parseUrl(plain.url);
    const token = opts.token ?? plain.token;
    const disk = new RemoteDisk({ ...opts, url: withPort(url), ...(token ? { token } : {}) });
    const timeoutMs = opts.connectTimeoutMs ?? 30_000;
    // 0 waits for the server forever (a recovering daemon: the kernel holds the I/O meanwhile).
    const tries = new Backoff({ initialMs: 100, maxMs: 1000, jitter: false, giveUpAfterMs: timeoutMs });
    // The first connect retries transient failures (refused, reset) until the timeout;
    // a refusal by the server (401/403/404, bad protocol) is final at once.
    let noted = -Infinity;
    for (;;) {
      try {
        await disk.open(Math.max(1, Math.min(tries.leftMs, 30_000)));
        break;
      } catch (e) {
        const last = e instanceof ConnectError ? e : new ConnectError((e as Error).message);
        const delay = last.fatal ? undefined : tries.next();
        if (delay === undefined) {
          disk.stopped = true;
          throw last.fatal || timeoutMs === 0 ? last : new ConnectError(`${last.message} (gave up after ${timeoutMs / 1000} s)`, last.status, false, last.closeCode);
        }
        // Someone waits at a terminal: say why it takes long, every few seconds, not every try.
        const waited = tries.elapsedMs;
        if (opts.onWait && waited >= WAIT_FIRST_NOTE_MS && waited - noted >= WAIT_NOTE_MS) {
          noted = waited;
          opts.onWait(`${last.message}; retrying, ${Math.round(waited / 1000)} s ${timeoutMs > 0 ? `of ${timeoutMs / 1000}` : 'so far'}`);
        }
        await new Promise((r) => setTimeout(r, delay));
      }
    }
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
    // A read-only session may read, flush and ask for checksums or the membership record (the server allows them too).
    if (this.opts.readOnly && req.op !== Op.Read && req.op !== Op.Flush && req.op !== Op.Checksum && req.op !== Op.MetaRead) {
      process.nextTick(cb, Errno.EPERM);
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
    const conn = this.conn;
    // The table and the socket's queue own what they send: the callers' buffers are free at once.
    for (const e of this.table.drainAll()) e.cb(Errno.ESHUTDOWN);
    this.stopTimers();
    if (conn) await conn.close(CloseCode.Normal, 'client closing');
    this.ready = false;
    this.conn = undefined;
  }

  // --- connection -------------------------------------------------------------------------

  private async open(timeoutMs: number): Promise<void> {
    await ServerConnection.open({
      url: this.opts.url, timeoutMs,
      ...(this.opts.token ? { token: this.opts.token } : {}),
      ...(this.opts.tls ? { tls: this.opts.tls } : {}),
      ...(this.opts.lendReads ? { lendReads: true } : {}),
    }, {
      version: PROTOCOL_VERSION,
      clientId: this.clientId,
      ...(this.sessionId ? { resume: this.sessionId } : {}),
      ...(this.opts.secret ? { secret: this.opts.secret } : {}),
      host: hostname(),
      ...(this.opts.readOnly ? { readOnly: true } : {}),
      // Only the first connect may take the export over: a reconnect that finds another writer stops.
      ...(this.opts.steal && !this.welcome ? { steal: true } : {}),
      features: this.lz4 ? ['lz4'] : [],
      maxPayload: this.opts.maxPayload ?? LIMITS.maxPayloadDefault,
    }, this.events);
  }

  /** A welcome came: refuse it, or make its connection the current one and replay. */
  private attach(conn: ServerConnection, welcome: Welcome): ConnectError | undefined {
    const url = this.opts.url;
    if (this.welcome && (welcome.size !== this.welcome.size || welcome.blockSize !== this.welcome.blockSize)) {
      return new ConnectError(`${url}: the export changed size or block size (${this.welcome.size} -> ${welcome.size}); refusing to replay onto it`, undefined, true);
    }
    // close() ran while this reconnect was under way: do not bring the connection to life.
    if (this.stopped) return new ConnectError(`${url}: transport closed`, undefined, true);
    const first = !this.welcome;
    this.conn = conn;
    this.welcome = welcome;
    this.info = {
      exportName: welcome.exportName, size: welcome.size, blockSize: welcome.blockSize,
      readOnly: welcome.readOnly || this.opts.readOnly === true, flush: welcome.flush, fua: welcome.fua, discard: welcome.discard,
      writeZeroes: welcome.writeZeroes, maxPayload: welcome.maxPayload,
    };
    if (this.sessionId && this.sessionId !== welcome.sessionId) {
      log.warn(`session ${this.sessionId.slice(0, 8)} was not resumed (server restarted?); new session ${welcome.sessionId.slice(0, 8)}`);
    }
    this.sessionId = welcome.sessionId;
    this.epoch = welcome.epoch;
    if (welcome.nextSeq > this.nextSeq) this.nextSeq = welcome.nextSeq;
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
    return undefined;
  }

  private onClose(conn: ServerConnection, code: number, reason: string): void {
    if (conn !== this.conn) return;
    this.ready = false;
    this.conn = undefined;
    if (this.stopped) return;
    if (FINAL_CLOSE_CODES.has(code)) return this.stopFor(code, reason);
    log.warn(`connection lost (${code}${reason ? ' ' + reason : ''}); ${this.table.size} requests outstanding`);
    this.emit('disconnected', reason || String(code));
    this.scheduleReconnect();
  }

  /**
   * The server will not take this client back (fenced, another writer, a wrong secret): stop,
   * failing everything outstanding with EIO, and say why ('fenced').
   */
  private stopFor(code: number, reason: string): void {
    const detail = reason ? ` (${reason})` : '';
    const why = code === CloseCode.Fenced ? `fenced: another client took session ${this.sessionId.slice(0, 8)} or the export over${detail}`
      : code === CloseCode.WriterBusy ? `another writer holds the export${detail}`
      : `the server refused the session's secret${detail}`;
    log.error(`${why}; this one stops`);
    this.stopped = true;
    for (const e of this.table.drainAll()) e.cb(Errno.EIO);
    this.emit('fenced', why);
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = this.backoff.next()!;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.stopped) return;
      this.open(Math.max(5_000, this.opts.backoffMaxMs ?? 5_000)).then(
        () => this.backoff.reset(),
        (err: ConnectError) => {
          if (this.stopped) return;
          if (err.closeCode !== undefined && FINAL_CLOSE_CODES.has(err.closeCode)) return this.stopFor(err.closeCode, err.closeReason ?? '');
          log.warn(`reconnect failed: ${err.message}`);
          this.scheduleReconnect();
        },
      );
    }, delay);
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
    const conn = this.conn;
    if (!this.ready || !conn) return;
    const out = this.sendBuf;
    this.table.takeSendable(out);
    if (out.length === 0) return;
    const reqs = this.reqBuf;
    let bytes = 0;
    for (let i = 0; i < out.length; i++) {
      const e = out[i]!;
      reqs.push({ seq: e.seq, op: e.req.op, flags: e.req.flags, offset: e.req.offset, length: e.req.length, payload: e.payload });
      bytes += e.req.op === Op.Write ? e.req.length : 0;
      if (reqs.length === LIMITS.maxRecords || bytes >= MAX_BATCH_BYTES || i === out.length - 1) {
        conn.send(reqs, this.lz4);
        this.requestsSent += reqs.length;
        this.messagesSent++;
        reqs.length = 0;
        bytes = 0;
      }
    }
    out.length = 0;
  }

  private onReplies(conn: ServerConnection, replies: BlockReply[]): void {
    if (conn !== this.conn) return;
    this.messagesReceived++;
    this.repliesReceived += replies.length;
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
    if (ioTimeout <= 0) return;
    this.ioTimer = setInterval(() => {
      const late = this.table.olderThan(performance.now() - ioTimeout);
      if (late.length === 0) return;
      // A failed WRITE whose frame still waits in the socket's queue leaves later with its own
      // bytes (the table's copy, retained by the connection): the caller may reuse its buffer
      // at once, and the connection (with everything else in flight on it) stays.
      for (const e of late) {
        this.table.complete(e.seq);
        this.timedOut++;
        e.cb(Errno.EIO);
      }
      log.warn(`${late.length} requests failed with EIO after the ${ioTimeout / 1000} s I/O timeout`);
    }, Math.min(1000, ioTimeout));
    this.ioTimer.unref();
  }

  private stopTimers(): void {
    clearInterval(this.ioTimer);
    clearTimeout(this.reconnectTimer);
  }
}
