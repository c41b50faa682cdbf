// The server's side of the WebSocket opening handshake (RFC 6455 4.2): http's 'upgrade' event
// has parsed the request; we check it, take the socket over (onread on a duplicate of its
// descriptor, where we can) and write the 101.
import type { IncomingMessage } from 'node:http';
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { plainFdOf, socketOnFd, type ReadTarget } from '../onread.js';
import { WsConn, type WsConnOptions } from './conn.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/** A Sec-WebSocket-Key as RFC 6455 requires it: base64 of 16 bytes. */
export function isValidKey(key: unknown): key is string {
  return typeof key === 'string' && /^[+/0-9A-Za-z]{22}==$/.test(key);
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
  // The caller's value goes into a header line: a line break in it would inject headers.
  if (/[\r\n\0]/.test(protocol)) throw new Error(`subprotocol ${JSON.stringify(protocol)} holds a CR, LF or NUL`);
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
