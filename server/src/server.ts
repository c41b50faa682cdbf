import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { LIMITS, SUBPROTOCOL, acceptUpgrade, bufferPool, logger, upgradeProblem } from '@wsblk/shared';
import { dupFd, sendv } from '@wsblk/native';
import { clusterLockOf, type Backend } from './backend/backend.js';
import { TokenAuth } from './auth.js';
import { FaultTable } from './faults/fault-table.js';
import { faultFilter } from './faults/storage-filter.js';
import { ExportMembership } from './session/membership.js';
import { ServerConnection, type ConnectionTerms } from './protocol/connection.js';
import type { ExportHandle } from './protocol/handshake.js';
import { ReplyBudget } from './protocol/reply-budget.js';
import { originProblem } from './origin.js';
import { SessionTable } from './session/session-table.js';
import { ExportStats } from './metrics/export-stats.js';
import { serverRegistry } from './metrics/server-metrics.js';
import type { Registry } from 'prom-client';

const log = logger('server');

/** How long close() waits for clients to answer the close frame before cutting them. */
const CLOSE_WAIT_MS = 2000;
/** Largest message a client may send (a batch of requests with their payloads). */
const MAX_MESSAGE = 64 << 20;

export interface StorageServerOptions {
  host?: string;
  port?: number;
  auth?: TokenAuth;
  tls?: { cert: string; key: string };
  /** How long a session waits for its client to come back (ms). */
  sessionGraceMs?: number;
  /** Largest READ/WRITE one request may carry. */
  maxPayload?: number;
  /** Reply bytes one connection may owe before it stops reading requests (default 64 MiB). */
  maxConnBuffer?: number;
  /** Reply bytes all connections together may owe (default 1 GiB). */
  maxBuffer?: number;
  /** An upgraded connection that sends no hello this long is closed (ms, default 5000). */
  helloTimeoutMs?: number;
  /** Ping interval; a peer silent for two is closed (ms, default 10000, 0 = no keepalive). */
  keepaliveMs?: number;
  /** A connection stalled in the middle of a frame this long is closed (ms, default 30000, 0 = never). */
  frameTimeoutMs?: number;
  /** Browser origins let in besides the server's own site ('*' = any; see origin.ts). */
  allowOrigins?: string[];
}

/**
 * The storage server: an HTTP(S) listener whose upgrade handler authenticates the bearer
 * token and routes `/<export>` to that export's backend. One ServerConnection per socket.
 */
export class StorageServer {
  private readonly exports = new Map<string, ExportHandle>();
  private readonly connections = new Set<ServerConnection>();
  private readonly sessions: SessionTable;
  private readonly terms: ConnectionTerms;
  private readonly allowOrigins: string[];
  private readonly http: HttpServer;
  private readonly auth: TokenAuth;
  private readonly maxPayload: number;
  private readonly frameTimeoutMs: number;
  private closing = false;
  /** The faults set at run time (admin API, `serve --faults`): every export's backend is wrapped by them. */
  readonly faults = new FaultTable();
  /** The Prometheus registry of this server (GET /metrics on the admin listener). */
  readonly metrics: Registry;

  constructor(private readonly opts: StorageServerOptions = {}) {
    this.auth = opts.auth ?? new TokenAuth();
    this.sessions = new SessionTable(opts.sessionGraceMs ?? 120_000);
    // Another gateway's client may then write the image (the lock spans gateways).
    this.sessions.onWriterGone = (name) => {
      this.exports.get(name)?.clusterLock?.releaseLock()
        .catch((e: Error) => log.warn(`export '${name}': cannot release its cluster lock: ${e.message}`));
    };
    this.terms = {
      sessions: this.sessions,
      budget: new ReplyBudget(opts.maxConnBuffer ?? 64 << 20, opts.maxBuffer ?? 1 << 30),
      helloTimeoutMs: opts.helloTimeoutMs ?? 5000,
      keepaliveMs: opts.keepaliveMs ?? 10_000,
      faults: this.faults.transport,
    };
    this.metrics = serverRegistry({
      exports: () => [...this.exports.values()].map((e) => [e.name, e.stats] as [string, ExportStats]),
      sessions: this.sessions, faults: this.faults,
    });
    this.faults.clientOf = (session, exportName) => this.sessions.find(session, exportName)?.clientId;
    this.allowOrigins = (opts.allowOrigins ?? []).map((o) => o.toLowerCase().replace(/\/+$/, ''));
    this.maxPayload = opts.maxPayload ?? LIMITS.maxPayloadDefault;
    this.frameTimeoutMs = opts.frameTimeoutMs ?? 30_000;
    this.http = opts.tls
      ? createHttpsServer({ cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) })
      : createHttpServer();
    this.http.on('request', (_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' });
      res.end(`wsblk storage server: connect with a WebSocket, subprotocol ${SUBPROTOCOL}\n`);
    });
    this.http.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
  }

  addExport(name: string, plain: Backend): void {
    if (this.exports.has(name)) throw new Error(`export '${name}' is defined twice`);
    // Passes straight through while no fault is set on the export.
    const backend = faultFilter(plain, this.faults.addExport(name));
    const membership = new ExportMembership(backend);
    // Known before the first replica-set client is welcomed (admit waits for it too).
    membership.load().catch((e: Error) => log.warn(`export '${name}': cannot read its membership record: ${e.message}`));
    const clusterLock = clusterLockOf(plain);
    this.exports.set(name, { name, backend, maxPayload: this.maxPayload, membership, stats: new ExportStats(), clusterLock });
  }

  get exportNames(): string[] {
    return [...this.exports.keys()];
  }

  /** Resolves with the bound address once listening. */
  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        const where = `${this.opts.host ?? '127.0.0.1'}:${this.opts.port ?? 7690}`;
        reject(new Error(err.code === 'EADDRINUSE' ? `cannot listen on ${where}: address in use` : `cannot listen on ${where}: ${err.message}`));
      };
      this.http.once('error', onError);
      this.http.listen(this.opts.port ?? 7690, this.opts.host ?? '127.0.0.1', () => {
        this.http.off('error', onError);
        const a = this.http.address();
        if (a === null || typeof a === 'string') return reject(new Error('unexpected listen address'));
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  private refuse(socket: Duplex, status: number, reason: string): void {
    const text = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 503: 'Service Unavailable' }[status] ?? 'Error';
    const extra = status === 401 ? 'WWW-Authenticate: Bearer realm="wsblk"\r\n' : '';
    socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\n${extra}Content-Length: ${Buffer.byteLength(reason) + 1}\r\n\r\n${reason}\n`);
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    socket.on('error', () => {});
    if (this.closing) return this.refuse(socket, 503, 'server is shutting down');
    let name: string;
    try {
      name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.replace(/^\/+/, ''));
    } catch {
      return this.refuse(socket, 400, 'bad export path');
    }
    const problem = upgradeProblem(req);
    if (problem) return this.refuse(socket, 400, problem);
    const foreign = originProblem(req, this.allowOrigins, this.opts.host ?? '127.0.0.1');
    if (foreign) {
      log.warn(`${peer}: refused 403: ${foreign}`);
      return this.refuse(socket, 403, foreign);
    }
    const protocols = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
    if (!protocols.includes(SUBPROTOCOL)) {
      return this.refuse(socket, 400, `subprotocol ${SUBPROTOCOL} required (client speaks ${protocols.join(',') || 'none'})`);
    }
    // Who (401) before what (404) before may-they (403): no export names for unknown tokens.
    const auth = this.auth.check(req.headers.authorization, name);
    const exp = this.exports.get(name);
    if (!auth.ok && auth.status === 401) {
      log.warn(`${peer}: refused 401 for '/${name}': ${auth.reason}`);
      return this.refuse(socket, 401, auth.reason);
    }
    if (!exp) {
      log.warn(`${peer}: refused 404: no export '${name}'`);
      // Only the names this token may open: a token for one export learns of no other.
      const visible = this.exportNames.filter((n) => this.auth.check(req.headers.authorization, n).ok);
      return this.refuse(socket, 404, `no export '${name}' (exports: ${visible.join(', ') || 'none'})`);
    }
    if (!auth.ok) {
      log.warn(`${peer}: refused ${auth.status} for '/${name}': ${auth.reason}`);
      return this.refuse(socket, auth.status, auth.reason);
    }
    const ws = acceptUpgrade(req, socket, head, SUBPROTOCOL, {
      maxMessage: MAX_MESSAGE, closeTimeoutMs: CLOSE_WAIT_MS,
      // Request frames that span socket chunks are assembled in pooled buffers, which go back
      // once every WRITE in them has reached the backend (ServerConnection.execute).
      pool: bufferPool,
      // Plain sockets are re-opened with onread (bench/RESULTS.md, lever 16), and frames go
      // straight to the descriptor while nothing is queued (lever 19).
      dupFd, sendv,
      // A peer stalled in the middle of a frame is closed (its buffer grows only with what
      // arrives); reading stops while more than maxBuffered waits unsent (WsConn's default).
      frameTimeoutMs: this.frameTimeoutMs,
    });
    const conn = new ServerConnection(ws, exp, auth.readOnly, this.terms, peer);
    this.connections.add(conn);
    void conn.closed.then(() => this.connections.delete(conn));
  }

  /** SIGTERM path: refuse new clients, finish in-flight requests, flush every backend, close. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // A pause would hold the drain forever; a crash fault's writes are kept (a clean stop).
    this.faults.clear(undefined, 'shutdown');
    // Upgraded sockets still count as the HTTP server's connections: stop listening, do not wait.
    this.http.close();
    await Promise.all([...this.connections].map((c) => c.drain()));
    // Let the close handshakes finish: a terminate() now would drop the replies still queued
    // on the socket (a large READ reply) along with the close frame. Cut only what hangs.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...this.connections].map((c) => c.closed)),
      new Promise((r) => { timer = setTimeout(r, CLOSE_WAIT_MS); }),
    ]);
    clearTimeout(timer);
    for (const c of this.connections) c.terminate();
    // Connections already gone (client cut, fenced) may still have operations running.
    await this.sessions.drained();
    this.sessions.clear();
    for (const exp of this.exports.values()) {
      try {
        await exp.backend.close();
      } catch (e) {
        log.error(`closing export '${exp.name}': ${(e as Error).message}`);
      }
    }
  }
}
