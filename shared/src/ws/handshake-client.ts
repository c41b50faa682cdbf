// The client's side of the WebSocket opening handshake (RFC 6455 4.1). The socket is opened
// with `onread`, so every read, the HTTP response included, goes into a buffer we choose; once
// the 101 is checked the same socket feeds the connection's FrameReader.
import { randomBytes } from 'node:crypto';
import { Socket, connect as netConnect, isIP } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { onreadInto, type ReadTarget } from '../onread.js';
import { WsConn, type WsConnOptions } from './conn.js';
import { acceptKey } from './handshake-server.js';

/** A fresh Sec-WebSocket-Key. */
export function newKey(): string {
  return randomBytes(16).toString('base64');
}

/** Why a client handshake failed. `status`/`body`: the server answered other than 101. */
export class WsHandshakeError extends Error {
  override name = 'WsHandshakeError';
  constructor(
    message: string,
    readonly status?: number,
    readonly body?: string,
    /** errno or TLS code of a socket error (ECONNREFUSED, DEPTH_ZERO_SELF_SIGNED_CERT, ...). */
    readonly code?: string,
  ) {
    super(message);
  }
}

export interface WsConnectOptions extends WsConnOptions {
  /** ws:// or wss:// URL (with a port). */
  url: URL;
  protocol: string;
  headers?: Record<string, string>;
  /** TLS options for wss:// (ca, rejectUnauthorized, ...). */
  tls?: ConnectionOptions;
  timeoutMs: number;
}

/** Largest HTTP response head (status line and headers) accepted. */
const MAX_HEAD = 16 * 1024;
/** Body of a refusal kept for the error message. */
const MAX_BODY = 512;

/** Sends reads to whoever reads the socket now: the handshake, then the frame reader. */
class Redirect implements ReadTarget {
  constructor(public target: ReadTarget) {}
  nextBuffer(): Buffer {
    return this.target.nextBuffer();
  }
  filled(n: number): void {
    this.target.filled(n);
  }
}

/** Collects the HTTP response: head, then (for a refusal) up to MAX_BODY bytes of body. */
class ResponseReader implements ReadTarget {
  buf = Buffer.allocUnsafe(MAX_HEAD + MAX_BODY);
  len = 0;
  constructor(private readonly onBytes: () => void) {}
  nextBuffer(): Buffer {
    return this.buf.subarray(this.len);
  }
  filled(n: number): void {
    this.len += n;
    this.onBytes();
  }
}

interface ParsedHead {
  status: number;
  statusText: string;
  headers: Map<string, string>;
  headEnd: number;
}

/** An HTTP token (RFC 9110 5.6.2): what a header name may be made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A CR, LF or NUL in a header value would end its line: what follows would be a header of its own. */
const LINE_BREAK = /[\r\n\0]/;

/** What is wrong with a header we are about to send, or undefined. */
function headerProblem(name: string, value: string): string | undefined {
  if (!TOKEN.test(name)) return `header name '${name.replace(/[^\x20-\x7e]/g, '?')}' is not an HTTP token`;
  if (LINE_BREAK.test(value)) return `header ${name} holds a CR, LF or NUL`;
  return undefined;
}

function parseHead(buf: Buffer, len: number): ParsedHead | null {
  const end = buf.subarray(0, len).indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  // Lines end with CRLF: a bare CR or LF inside one is a response trying to smuggle a line.
  if (lines.some((line) => LINE_BREAK.test(line))) throw new WsHandshakeError('HTTP response with a bare CR or LF in its head');
  const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(lines[0] ?? '');
  if (!m) throw new WsHandshakeError(`not an HTTP response: '${(lines[0] ?? '').slice(0, 60)}'`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status: Number(m[1]), statusText: m[2] ?? '', headers, headEnd: end + 4 };
}

/** Opens a WebSocket; resolves once the server's 101 is checked. Call start() on it. */
export function wsConnect(opts: WsConnectOptions): Promise<WsConn> {
  return new Promise((resolve, reject) => {
    const url = opts.url;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(url.port) || (url.protocol === 'wss:' ? 443 : 80);
    const key = newKey();
    const extra = Object.entries(opts.headers ?? {});
    for (const [name, value] of [['Sec-WebSocket-Protocol', opts.protocol], ...extra] as const) {
      const problem = headerProblem(name, value);
      if (problem) return reject(new WsHandshakeError(problem));
    }
    let settled = false;
    let head: ParsedHead | null = null;
    const response = new ResponseReader(() => onBytes());
    const redirect = new Redirect(response);
    const onread = onreadInto(redirect);
    // tls.connect takes onread as net.connect does (Node >= 12); @types/node does not list it.
    const socket: Socket = url.protocol === 'wss:'
      ? tlsConnect({ ...opts.tls, host, port, ...(isIP(host) ? {} : { servername: host }), onread } as ConnectionOptions)
      : netConnect({ host, port, onread });

    const done = (err: WsHandshakeError | null, conn?: WsConn) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (err) {
        socket.destroy();
        reject(err);
      } else {
        resolve(conn!);
      }
    };
    const timer = setTimeout(() => done(new WsHandshakeError(`no answer within ${Math.round(opts.timeoutMs / 1000)} s`, undefined, undefined, 'ETIMEDOUT')), opts.timeoutMs);
    const onError = (err: NodeJS.ErrnoException) => done(new WsHandshakeError(err.message, undefined, undefined, err.code));
    const onClose = () => {
      if (head && head.status !== 101) return refusal(true);
      done(new WsHandshakeError('the server closed the connection during the handshake', undefined, undefined, 'ECONNRESET'));
    };
    socket.on('error', onError);
    socket.on('close', onClose);

    const refusal = (ended: boolean) => {
      const h = head!;
      const length = Number(h.headers.get('content-length') ?? NaN);
      const have = response.len - h.headEnd;
      // Without a Content-Length (chunked, or a body up to the close) the status is what counts:
      // take the body as far as it came, rather than wait for a close that may never come.
      const want = Number.isFinite(length) ? Math.min(length, MAX_BODY) : have;
      if (have < want && !ended && response.len < response.buf.length) return;
      const body = response.buf.toString('utf8', h.headEnd, h.headEnd + Math.min(have, want));
      done(new WsHandshakeError(`HTTP ${h.status} ${h.statusText}`.trim(), h.status, body));
    };

    const onBytes = () => {
      if (settled) return;
      if (!head) {
        try {
          head = parseHead(response.buf, response.len);
        } catch (e) {
          return done(e as WsHandshakeError);
        }
        if (!head) {
          if (response.len >= MAX_HEAD) done(new WsHandshakeError(`HTTP response head larger than ${MAX_HEAD} bytes`));
          return;
        }
      }
      if (head.status !== 101) return refusal(false);
      const h = head.headers;
      if ((h.get('upgrade') ?? '').toLowerCase() !== 'websocket') return done(new WsHandshakeError('101 without Upgrade: websocket'));
      if (h.get('sec-websocket-accept') !== acceptKey(key)) return done(new WsHandshakeError('wrong Sec-WebSocket-Accept in the 101'));
      if (h.get('sec-websocket-protocol') !== opts.protocol) {
        return done(new WsHandshakeError(`the server did not accept subprotocol ${opts.protocol} (it answered '${h.get('sec-websocket-protocol') ?? ''}')`, 101));
      }
      // Frames that came in the same read as the 101 wait in the connection for start().
      const conn = new WsConn(socket, 'client', opts, response.buf.subarray(head.headEnd, response.len));
      redirect.target = conn.reader;
      done(null, conn);
    };

    const lines = [
      `GET ${url.pathname}${url.search} HTTP/1.1`,
      `Host: ${url.host}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`,
      'Sec-WebSocket-Version: 13',
      `Sec-WebSocket-Protocol: ${opts.protocol}`,
      ...extra.map(([k, v]) => `${k}: ${v}`),
    ];
    socket.write(lines.join('\r\n') + '\r\n\r\n');
  });
}
