// Listening on a Unix socket with accept on the libuv loop (csrc/unix_listener.cc): each
// connection arrives as a file descriptor, for net.Socket({ fd, onread }), which net.Server's
// sockets cannot have.
import { binding, type RawUnixListener } from './binding.js';

export interface UnixListenerHandlers {
  /** A new connection, non-blocking and close-on-exec: wrap it (new net.Socket({ fd })) or close it. */
  connection(fd: number): void;
  /** accept failed (EMFILE, ...): accepting pauses; call resume() to go on. */
  error(err: NodeJS.ErrnoException): void;
}

/** A listening socket bound to `path` (which must not exist). close() stops it; it does not unlink the path. */
export class UnixListener {
  private raw: RawUnixListener | null;

  constructor(readonly path: string, handlers: UnixListenerHandlers, backlog = 511) {
    this.raw = new binding.UnixListener(path, backlog, (v) => {
      if (v >= 0) return handlers.connection(v);
      const err: NodeJS.ErrnoException = new Error(`accept on ${path} failed: errno ${-v}`);
      err.errno = v;
      err.syscall = 'accept4';
      handlers.error(err);
    });
  }

  resume(): void {
    this.raw?.resume();
  }

  close(): void {
    this.raw?.close();
    this.raw = null;
  }
}
