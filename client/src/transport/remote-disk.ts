import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { ConnectionOptions } from 'node:tls';
import {
  CloseCode, Errno, FLAG_NO_UNMAP, LIMITS, Op, PROTOCOL_VERSION, errnoName, isAllZero, logger, microtask,
  type BlockReply, type BlockRequest, type Welcome,
} from '@wsblk/shared';
import type { BlockTarget, DiskInfo, IoCallback, IoRequest } from '../target.js';
import { ConnectError, FINAL_CLOSE_CODES, ServerConnection, type ConnectionEvents } from './connection.js';
import { Gateways } from './gateways.js';
import { InflightTable, type InflightEntry } from './inflight.js';
import { Backoff } from './reconnect.js';
import { parseUrl, splitCredentials, withPort } from './url.js';

export { ConnectError } from './connection.js';
export { parseUrl } from './url.js';

const log = logger('transport');

export interface RemoteDiskOptions {
  /** ws[s]://host:port/<export>; credentials in it (ws://user:token@...) are the token, and are dropped from it. */
  url: string;
  /**
   * Other gateways of the same export (connect --failover): a lost connection is taken up on
   * one of them when its own gateway does not answer. Credentials in them are dropped: the
   * device has one token (`token`, or the one in `url`).
   */
  failover?: string[];
  /** The gateway `resumeSession` lives on (`url` or one of `failover`): tried first. Default `url`. */
  resumeGateway?: string;
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

/**
 * Counts what a transport carries (a replica's figures in the daemon's metrics): called as each
 * request is answered, with no closure or clock read of its own per request. What is in flight
 * is the transport's own count (RemoteDisk.inflight).
 */
export interface TransportMeter {
  /** A request answered: its op, bytes, and seconds since it was accepted (to the turn). */
  count(op: number, length: number, seconds: number): void;
}

export interface TransportStats {
  connected: boolean;
  sessionId: string;
  epoch: number;
  inflight: number;
  inflightBytes: number;
  reconnects: number;
  /** The gateway the session lives on (`url` or one of `failover`): connected, or tried first while reconnecting. */
  gateway: string;
  /** Times the connection moved to another gateway. */
  failovers: number;
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
/** A first connect with failover gateways gives each this long before trying the next one. */
const GATEWAY_TRY_MS = 5_000;
/**
 * The client transport: one remote export over one connection at a time. It composes a
 * ServerConnection (hello, welcome, keepalive, decode, send), the InflightTable (what is
 * outstanding, and so what is replayed) and a Backoff (when to reconnect). It keeps every
 * request until the server answers it; on a lost connection it reconnects, resumes the
 * session (the server fences the old connection) and replays what is outstanding, in order.
 * With failover gateways, each reconnect round tries the gateway the session lives on first,
 * then the others in list order; a new gateway has no such session, so the client opens a new
 * one there and replays the same requests (writes are positional: a replay is harmless).
 * Emits 'connected' (welcome, sessionLost: the server did not know the session it resumed), 'disconnected' (reason), 'fenced' (why: the server will not
 * take this client back, e.g. another client took the session or the export over: this one stops).
 */
export class RemoteDisk extends EventEmitter implements BlockTarget {
  info!: DiskInfo;
  /** Counts every request submitted here as it is answered (set once, before the first submit). */
  meter: TransportMeter | undefined;
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
  /** `url` and the failover gateways, and the one the session lives on. */
  private readonly gateways: Gateways;
  /** Why the current gateway was left (for the failover's log line). */
  private lostWhy = '';
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
  /** The replica set this disk writes for (sent in every hello: the server fences older epochs). */
  private setView: { setId: string; epoch: number } | undefined;
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
    this.gateways = new Gateways([opts.url, ...opts.failover ?? []], opts.resumeGateway);
    this.backoff = new Backoff({ initialMs: opts.backoffInitialMs ?? 100, maxMs: opts.backoffMaxMs ?? 5_000, jitter: true, giveUpAfterMs: 0 });
  }

  /** Connects and waits for the welcome. Rejects with a ConnectError that says why. */
  static async connect(opts: RemoteDiskOptions): Promise<RemoteDisk> {
    const disk = new RemoteDisk(normalized(opts));
    const timeoutMs = opts.connectTimeoutMs ?? 30_000;
    // 0 waits for the server forever (a recovering daemon: the kernel holds the I/O meanwhile).
    const tries = new Backoff({ initialMs: 100, maxMs: 1000, jitter: false, giveUpAfterMs: timeoutMs });
    // The first connect retries transient failures (refused, reset) until the timeout;
    // a refusal by the server (401/403/404, bad protocol) is final at once.
    let noted = -Infinity;
    for (;;) {
      try {
        await disk.openRound(Math.max(1, Math.min(tries.leftMs, disk.gateways.count > 1 ? GATEWAY_TRY_MS : 30_000)), (e) => e.fatal);
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

  /**
   * A disk whose first connect is left to the reconnect loop (a replica unreachable at attach):
   * returned at once; 'connected' tells when it is there. Its info is unknown until then.
   */
  static background(opts: RemoteDiskOptions): RemoteDisk {
    const disk = new RemoteDisk(normalized(opts));
    disk.startTimers();
    disk.scheduleReconnect();
    return disk;
  }

  /** Connected to the server now. */
  get connected(): boolean {
    return this.ready;
  }

  /** The set and epoch this disk writes for, from now on (hellos of later connections carry it). */
  useSet(setId: string, epoch: number): void {
    this.setView = { setId, epoch };
  }

  /**
   * Fails every request held with `status`, at once, and never sends them again; then drops the
   * connection, so the next one resumes the session and the server fences (waits out) whatever
   * the old one started before anything new runs. A replica set does this to a replica it ejects.
   */
  abandon(status: number): void {
    if (this.closed || this.stopped) return;
    const held = this.table.drainAll();
    if (held.length) log.warn(`abandoning ${held.length} requests (${errnoName(status)})`);
    this.answerAll(held, status);
    this.conn?.terminate();
  }

  get stats(): TransportStats {
    return {
      connected: this.ready,
      sessionId: this.sessionId,
      epoch: this.epoch,
      inflight: this.table.size,
      inflightBytes: this.table.bytesInFlight,
      reconnects: this.reconnects,
      gateway: this.gateways.current,
      failovers: this.gateways.moves,
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

  /** Requests accepted and not answered yet. */
  get inflight(): number {
    return this.table.size;
  }

  submit(req: IoRequest, cb: IoCallback): void {
    if (this.closed || this.stopped) {
      // Fenced (stopped, not closed): nothing will ever send it, so fail it as in-flight ones were.
      this.meter?.count(req.op, req.length, 0);
      process.nextTick(cb, this.closed ? Errno.ESHUTDOWN : Errno.EIO);
      return;
    }
    // Read-only: what does not change the data may go (reads, flushes, checksums, the record).
    if (this.opts.readOnly && (req.op === Op.Write || req.op === Op.Discard || req.op === Op.WriteZeroes || req.op === Op.MetaWrite)) {
      this.meter?.count(req.op, req.length, 0);
      process.nextTick(cb, Errno.EPERM);
      return;
    }
    // An all-zero write travels as WRITE_ZEROES (keeping the blocks allocated, as a write would).
    if (req.op === Op.Write && req.payload && this.info?.writeZeroes && isAllZero(req.payload)) {
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
    this.answerAll(this.table.drainAll(), Errno.ESHUTDOWN);
    this.stopTimers();
    if (conn) await conn.close(CloseCode.Normal, 'client closing');
    this.ready = false;
    this.conn = undefined;
  }

  // --- connection -------------------------------------------------------------------------

  /**
   * One round: the gateway the session lives on (it can resume there, and its dedup window
   * answers replays), then the others in list order, with no pause between them; the backoff is
   * between rounds. A failure `final` says retrying cannot help ends the round at once.
   * Rejects with the failure (or, over several gateways, every gateway's).
   *
   * A device that has a session, refused as a second writer (WriterBusy) by a gateway other
   * than its own, goes on to the next gateway: one gateway's view (a transient lock state, a
   * file export's own session table) must not stop it while another may take it. Its own
   * gateway refusing it stops it at once, as with one server; so does a round that ends with a
   * WriterBusy and no welcome: the lock spans the gateways, its holder is not this device (a
   * reclaim would have taken it back), and the gateways that did not answer cannot free it.
   */
  private async openRound(timeoutMs: number, final: (e: ConnectError) => boolean): Promise<void> {
    const failed: ConnectError[] = [];
    let busy: ConnectError | undefined;
    for (const url of this.gateways.round()) {
      if (this.stopped) break;
      try {
        await this.open(url, timeoutMs);
        return;
      } catch (e) {
        const err = e instanceof ConnectError ? e : new ConnectError((e as Error).message);
        const elsewhere = this.sessionId !== '' && url !== this.gateways.current && err.closeCode === CloseCode.WriterBusy;
        if (final(err) && !elsewhere) throw err;
        if (elsewhere) busy ??= err;
        if (url === this.gateways.current) this.lostWhy = err.message;
        failed.push(err);
      }
    }
    if (busy) throw busy;
    if (failed.length <= 1) throw failed[0] ?? new ConnectError(`${this.opts.url}: transport closed`, undefined, true);
    throw new ConnectError(`no gateway answered: ${failed.map((e) => e.message).join('; ')}`, undefined, failed.every((e) => e.fatal));
  }

  private async open(url: string, timeoutMs: number): Promise<void> {
    await ServerConnection.open({
      url, timeoutMs,
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
      // A device that has a session takes its own writer lock back from the gateway it left (a
      // failover; or its own gateway restarted, whose dead instance still holds the lock): the
      // lock's record proves it by the secret. Never on a fresh connect, which has no session.
      ...(this.sessionId && !this.opts.readOnly ? { reclaim: true } : {}),
      features: this.lz4 ? ['lz4'] : [],
      maxPayload: this.opts.maxPayload ?? LIMITS.maxPayloadDefault,
      ...(this.setView ? { setId: this.setView.setId, setEpoch: this.setView.epoch } : {}),
    }, this.events);
  }

  /** A welcome came: refuse it, or make its connection the current one and replay. */
  private attach(conn: ServerConnection, welcome: Welcome): ConnectError | undefined {
    const url = conn.url;
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
    const left = this.gateways.current;
    const moved = this.gateways.arrivedAt(url);
    if (moved) {
      // A new gateway has no session of ours: the server opens one, and the replay below re-sends what was outstanding.
      log.info(`failed over from ${left} to ${url} (${this.lostWhy || 'unreachable'}); session ${welcome.sessionId.slice(0, 8)} there, replaying ${this.table.size} requests`);
    }
    // The server did not know our session: it restarted, and may have lost what it had not flushed.
    const sessionLost = !moved && this.sessionId !== '' && this.sessionId !== welcome.sessionId;
    if (sessionLost) log.warn(`session ${this.sessionId.slice(0, 8)} was not resumed (server restarted?); new session ${welcome.sessionId.slice(0, 8)}`);
    this.lostWhy = '';
    this.sessionId = welcome.sessionId;
    this.epoch = welcome.epoch;
    if (welcome.nextSeq > this.nextSeq) this.nextSeq = welcome.nextSeq;
    // Replay: everything not completed goes again, in sequence order, before new requests.
    this.table.requeueAll();
    const replay = this.table.size;
    if (!first) this.reconnects++;
    if (!first && replay) {
      this.replayed += replay;
      // A failover said so above.
      if (!moved) log.info(`reconnected (session ${welcome.sessionId.slice(0, 8)} epoch ${welcome.epoch}, ${welcome.resumed ? 'resumed' : 'new'}); replaying ${replay} requests`);
    }
    this.ready = true;
    this.emit('connected', welcome, sessionLost);
    this.flush();
    return undefined;
  }

  private onClose(conn: ServerConnection, code: number, reason: string): void {
    if (conn !== this.conn) return;
    this.ready = false;
    this.conn = undefined;
    if (this.stopped) return;
    if (FINAL_CLOSE_CODES.has(code)) return this.stopFor(code, reason);
    this.lostWhy = `connection lost (${code}${reason ? ' ' + reason : ''})`;
    log.warn(`${this.lostWhy}; ${this.table.size} requests outstanding`);
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
    this.answerAll(this.table.drainAll(), Errno.EIO);
    this.emit('fenced', why);
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = this.backoff.next()!;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.stopped) return;
      const final = (e: ConnectError) => e.closeCode !== undefined && FINAL_CLOSE_CODES.has(e.closeCode);
      this.openRound(Math.max(5_000, this.opts.backoffMaxMs ?? 5_000), final).then(
        () => this.backoff.reset(),
        (err: ConnectError) => {
          if (this.stopped) return;
          if (final(err)) return this.stopFor(err.closeCode!, err.closeReason ?? '');
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
    const meter = this.meter;
    const now = meter ? performance.now() : 0;
    for (const rep of replies) {
      const e = this.table.complete(rep.seq);
      if (!e) continue; // timed out already, or answered twice across a reconnect
      let status = rep.status;
      if (status === 0 && e.req.op === Op.Read && rep.data?.length !== e.req.length) {
        log.error(`READ ${e.req.offset}+${e.req.length}: server sent ${rep.data?.length ?? 0} bytes`);
        status = Errno.EIO;
      }
      meter?.count(e.req.op, e.req.length, (now - e.since) / 1000);
      e.cb(status, status === 0 ? rep.data : undefined);
    }
    this.flush();
  }

  /** Answers requests that have left the table with `status` (counted by the meter). */
  private answerAll(entries: readonly InflightEntry[], status: number): void {
    const meter = this.meter;
    const now = meter ? performance.now() : 0;
    for (const e of entries) {
      meter?.count(e.req.op, e.req.length, (now - e.since) / 1000);
      e.cb(status);
    }
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
      for (const e of late) this.table.complete(e.seq);
      this.timedOut += late.length;
      this.answerAll(late, Errno.EIO);
      log.warn(`${late.length} requests failed with EIO after the ${ioTimeout / 1000} s I/O timeout`);
    }, Math.min(1000, ioTimeout));
    this.ioTimer.unref();
  }

  private stopTimers(): void {
    clearInterval(this.ioTimer);
    clearTimeout(this.reconnectTimer);
  }
}

/** The options with every URL in its canonical form (port written out), the token out of the URL. */
function normalized(opts: RemoteDiskOptions): RemoteDiskOptions {
  const canonical = (text: string) => withPort(parseUrl(splitCredentials(text).url));
  const token = opts.token ?? splitCredentials(opts.url).token;
  return {
    ...opts, url: canonical(opts.url), ...(token ? { token } : {}),
    ...(opts.failover ? { failover: opts.failover.map(canonical) } : {}),
    ...(opts.resumeGateway ? { resumeGateway: canonical(opts.resumeGateway) } : {}),
  };
}
