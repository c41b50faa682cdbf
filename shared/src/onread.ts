// Sockets that read with `onread` (node:net): the kernel writes each read into the buffer a
// ReadTarget names, with no buffer per read and no Readable stream in between. Used by the
// WebSocket client and server (ws/handshake-*.ts) and the daemon's NBD export.
import { Socket, type OnReadOpts, type SocketConstructorOpts } from 'node:net';
import { TLSSocket } from 'node:tls';

/** Where a socket read puts its bytes, and what to do once they are there. */
export interface ReadTarget {
  /** The buffer the next read fills (at most its length). */
  nextBuffer(): Buffer;
  /** `n` bytes were read into the buffer nextBuffer() returned last. */
  filled(n: number): void;
}

/** The onread option of net.connect / tls.connect / new net.Socket for a ReadTarget. */
export function onreadInto(target: ReadTarget): OnReadOpts {
  return { buffer: () => target.nextBuffer(), callback: (n: number) => { target.filled(n); return true; } };
}

/**
 * A connected descriptor (accepted, or duplicated) as a net.Socket that reads into `target`.
 * allowHalfOpen: the owner decides what an end from the peer means.
 */
export function socketOnFd(fd: number, target: ReadTarget): Socket {
  // onread is an option of new net.Socket() too (Node's docs), though @types/node lists it
  // only for net.connect().
  const opts: SocketConstructorOpts & { onread: OnReadOpts } = {
    fd, readable: true, writable: true, allowHalfOpen: true, onread: onreadInto(target),
  };
  return new Socket(opts);
}

/**
 * The descriptor of a plain (not TLS) TCP or Unix socket, or -1: the one a caller may read,
 * write or duplicate beside Node's handle.
 */
export function plainFdOf(socket: unknown): number {
  if (!(socket instanceof Socket) || socket instanceof TLSSocket) return -1;
  const fd = (socket as Socket & { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}
