// The server's admin listener: plain HTTP with JSON, apart from the storage listener, with its
// own bearer token. Routes are added by what they serve (faults now; /metrics can be added the
// same way): route(method, pattern, handler).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import { logger } from '@wsblk/shared';

const log = logger('admin');

/** Largest request body (a fault is a few hundred bytes). */
const MAX_BODY = 64 << 10;

export interface AdminOptions {
  host: string;
  port: number;
  /** Required by every request as `Authorization: Bearer TOKEN`; absent: none (loopback only, see isLoopback). */
  token?: string;
}

export interface AdminRequest {
  method: string;
  /** The pattern's capture groups, URL-decoded. */
  params: string[];
  query: URLSearchParams;
  /** The JSON body, parsed; undefined when there was none. */
  body: unknown;
  /** Who asked, for the log: the peer's address and what it says it is. */
  who: string;
}

export interface AdminReply {
  status: number;
  /** Sent as JSON (one line and a newline). */
  json?: unknown;
  /** Sent as it is, with `contentType` (e.g. Prometheus text). */
  text?: string;
  contentType?: string;
}

export type AdminHandler = (req: AdminRequest) => AdminReply | Promise<AdminReply>;

/** An error a handler throws to answer with its status and a one-line reason. */
export class AdminError extends Error {
  override name = 'AdminError';
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Whether an address is this machine only: a listener there needs no token. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export class AdminServer {
  private readonly routes: Array<{ method: string; pattern: RegExp; handler: AdminHandler }> = [];
  private readonly http: Server;
  private readonly tokenHash: Buffer | undefined;

  constructor(private readonly opts: AdminOptions) {
    this.tokenHash = opts.token === undefined ? undefined : sha256(opts.token);
    this.http = createServer((req, res) => void this.serve(req, res));
  }

  /** Adds a route; `pattern` matches the whole path (anchor it), its groups become params. */
  route(method: string, pattern: RegExp, handler: AdminHandler): this {
    this.routes.push({ method, pattern, handler });
    return this;
  }

  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const where = `${this.opts.host}:${this.opts.port}`;
      const onError = (err: NodeJS.ErrnoException) => {
        reject(new Error(err.code === 'EADDRINUSE' ? `cannot listen on ${where} (admin): address in use` : `cannot listen on ${where} (admin): ${err.message}`));
      };
      this.http.once('error', onError);
      this.http.listen(this.opts.port, this.opts.host, () => {
        this.http.off('error', onError);
        const a = this.http.address();
        if (a === null || typeof a === 'string') return reject(new Error('unexpected listen address'));
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  private authorized(req: IncomingMessage): boolean {
    if (this.tokenHash === undefined) return true;
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    return m !== null && timingSafeEqual(sha256(m[1]!), this.tokenHash);
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const send = (r: AdminReply) => {
      if (r.text !== undefined) {
        res.writeHead(r.status, { 'content-type': r.contentType ?? 'text/plain; charset=utf-8' });
        res.end(r.text);
      } else {
        res.writeHead(r.status, { 'content-type': 'application/json' });
        res.end(r.json === undefined ? '' : JSON.stringify(r.json) + '\n');
      }
    };
    const fail = (status: number, reason: string) => send({ status, json: { error: reason } });
    try {
      if (!this.authorized(req)) {
        res.setHeader('www-authenticate', 'Bearer realm="wsblk-admin"');
        return fail(401, 'admin token missing or wrong (Authorization: Bearer TOKEN)');
      }
      const url = new URL(req.url ?? '/', 'http://admin');
      const method = req.method ?? 'GET';
      const matches = this.routes.map((r) => ({ r, m: r.pattern.exec(url.pathname) })).filter((x) => x.m !== null);
      if (matches.length === 0) return fail(404, `no such path ${url.pathname}`);
      const hit = matches.find((x) => x.r.method === method);
      if (!hit) {
        res.setHeader('allow', [...new Set(matches.map((x) => x.r.method))].join(', '));
        return fail(405, `${method} is not allowed on ${url.pathname}`);
      }
      const raw = await readBody(req);
      let body: unknown;
      if (raw.length > 0) {
        try {
          body = JSON.parse(raw.toString('utf8'));
        } catch (e) {
          return fail(400, `the body is not JSON: ${(e as Error).message}`);
        }
      }
      const agent = String(req.headers['user-agent'] ?? '').replace(/[^\x20-\x7e]/g, '').slice(0, 80);
      const who = `${req.socket.remoteAddress}:${req.socket.remotePort}${agent ? ` (${agent})` : ''}`;
      const params = hit.m!.slice(1).map((p) => decodeURIComponent(p ?? ''));
      send(await hit.r.handler({ method, params, query: url.searchParams, body, who }));
    } catch (e) {
      if (e instanceof AdminError) return fail(e.status, e.message);
      log.error(`${req.method} ${req.url}: ${(e as Error).stack ?? e}`);
      fail(500, (e as Error).message);
    }
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      // The rest is read and dropped, so the answer reaches the client.
      if (n > MAX_BODY) return reject(new AdminError(413, `the body is larger than ${MAX_BODY} bytes`));
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
