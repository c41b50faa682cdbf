// The WebSocket opening handshake of both ends (RFC 6455 section 4), for WsConn.
//
// Client: the socket is opened with `onread`, so every read, the HTTP response included, goes
// into a buffer we choose; once the 101 is checked the same socket feeds the FrameReader.
// Server: http's 'upgrade' event has parsed the request; we check it, take the socket over
// (onread on a duplicate of its descriptor, where we can) and write the 101.
import type { IncomingMessage } from 'node:http';
import { Socket, connect as netConnect, isIP } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { Duplex } from 'node:stream';
import { onreadInto, plainFdOf, socketOnFd } from './onread.js';
import { WsConn, acceptKey, isValidKey, newKey, type ReadTarget, type WsConnOptions } from './ws.js';

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

function parseHead(buf: Buffer, len: number): ParsedHead | null {
  const end = buf.subarray(0, len).indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = buf.toString('latin1', 0, end).split('\r\n');
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
      ...Object.entries(opts.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    ];
    socket.write(lines.join('\r\n') + '\r\n\r\n');
  });
}

/** What is wrong with an upgrade request as WebSocket (RFC 6455 4.2.1), or undefined. */
export function upgradeProblem(req: IncomingMessage): string | undefined {
  if (req.method !== 'GET') return `method ${req.method} (a WebSocket upgrade is a GET)`;
  if (String(req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return 'Upgrade: websocket required';
  if (req.headers['sec-websocket-version'] !== '13') return 'Sec-WebSocket-Version: 13 required';
  if (!isValidKey(req.headers['sec-websocket-key'])) return 'missing or malformed Sec-WebSocket-Key';
  return undefined;
}

export interface AcceptOptions extends WsConnOptions {
  /**
   * fcntl(F_DUPFD_CLOEXEC) (the native addon's dupFd: a new descriptor, or a negative errno).
   * With it a plain TCP or Unix socket is re-opened with onread on a duplicate of its
   * descriptor and http's socket is dropped, so frames are read into buffers the FrameReader
   * chooses rather than in 'data' events (a fresh 64 KiB buffer per read, and the stream
   * machinery: bench/RESULTS.md, lever 16). TLS sockets, and sockets with bytes still queued
   * either way, keep 'data' events.
   */
  dupFd?: (fd: number) => number;
}

/** Accepts a checked upgrade: writes the 101 and returns the connection (call start()). */
export function acceptUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, protocol: string, opts: AcceptOptions): WsConn {
  const key = req.headers['sec-websocket-key'] as string;
  const response =
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${acceptKey(key)}\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`;
  const adopted = opts.dupFd ? adopt(socket, opts.dupFd) : null;
  if (!adopted) {
    socket.write(response);
    return new WsConn(socket as Socket, 'server', opts, head);
  }
  adopted.socket.write(response);
  const conn = new WsConn(adopted.socket, 'server', opts, head, 'onread');
  adopted.reads.reader = conn.reader;
  return conn;
}

/**
 * The reads of an adopted socket. net.Socket asks for its first read buffer as it is made,
 * before the WsConn (and its reader) exists: that read goes into a buffer of its own and is
 * pushed to the reader; every later read goes straight into the reader's buffers.
 */
class AdoptedReads implements ReadTarget {
  private first: Buffer | null = Buffer.allocUnsafe(16 * 1024);
  reader: ReadTarget & { push(chunk: Buffer): void } | null = null;
  nextBuffer(): Buffer {
    return this.first ?? this.reader!.nextBuffer();
  }
  filled(n: number): void {
    const first = this.first;
    if (first === null) return this.reader!.filled(n);
    this.first = null;
    this.reader!.push(first.subarray(0, n));
  }
}

/**
 * A plain socket from http's 'upgrade' as a new Socket with onread on a duplicate of its
 * descriptor; the old socket is destroyed, which closes only its own descriptor (the
 * connection stays open through the duplicate). Null when the socket cannot be taken over.
 */
function adopt(old: Duplex, dupFd: (fd: number) => number): { socket: Socket; reads: AdoptedReads } | null {
  const fd = plainFdOf(old);
  if (fd < 0 || old.destroyed) return null;
  // Bytes http read past the request are in `head`; anything else buffered either way would
  // be lost with the old socket.
  if (old.readableLength !== 0 || old.writableLength !== 0) return null;
  const dup = dupFd(fd);
  if (dup < 0) return null;
  const reads = new AdoptedReads();
  const socket = socketOnFd(dup, reads);
  old.destroy();
  return { socket, reads };
}
