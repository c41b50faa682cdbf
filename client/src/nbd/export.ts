// NbdExport: a fixed-newstyle NBD server on a Unix socket that exposes one BlockTarget,
// under the default name "" and under the target's own export name.
import { chmod, lstat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { UnixListener } from '@wsblk/native';
import type { BlockTarget } from '../target.js';
import { NbdConnection } from './connection.js';
import type { ExportInfoOptions } from './export-info.js';
import { DEFAULT_FLOW_LIMITS } from './transmission.js';

export interface NbdExportOptions extends ExportInfoOptions {
  /** Per connection: stop reading requests while outstanding bytes exceed this (16 MiB). */
  maxBufferedBytes?: number;
  /** Per connection: ... or while this many requests are outstanding (1024). */
  maxInflight?: number;
  /** A client must finish option haggling within this time, as with qemu-nbd (10 s; 0: no limit). */
  handshakeTimeoutMs?: number;
  /** close() waits this long for outstanding requests before dropping clients (10 s). */
  closeTimeoutMs?: number;
  /** Connection-level events (client errors, refused handshakes); silent by default. */
  log?: (message: string) => void;
}

export class NbdExport {
  private server: UnixListener | null = null;
  private path: string | null = null;
  private readonly connections = new Set<NbdConnection>();

  constructor(
    readonly target: BlockTarget,
    private readonly options: NbdExportOptions = {},
  ) {}

  get socketPath(): string | null {
    return this.path;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Listens on a Unix socket (mode 0600). A stale socket file is removed; a live one (another
   * server answers) is an error.
   */
  async listen(socketPath: string): Promise<void> {
    if (this.server) throw new Error(`NBD export already listening on ${this.path}`);
    await claimSocketPath(socketPath);
    // Our own accept (native): net.Server's sockets cannot read into buffers we choose.
    const server = new UnixListener(socketPath, {
      connection: (fd) => this.accept(fd),
      error: (err) => {
        // EMFILE and the like: accepting pauses; try again shortly.
        this.log(`nbd server error: ${err.message}`);
        setTimeout(() => this.server?.resume(), 500).unref();
      },
    });
    this.server = server;
    this.path = socketPath;
    await chmod(socketPath, 0o600);
  }

  /**
   * Stops accepting clients, lets every connection answer its outstanding requests, then
   * closes them (dropping those still busy after closeTimeoutMs) and removes the socket file.
   */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    server.close();
    // Connections stop taking requests now, before anything is awaited: a request whose bytes
    // arrive while the socket file is being removed must not run.
    const conns = [...this.connections];
    for (const c of conns) c.shutdown();
    // No new client can connect from here on: the socket file goes now (as net.Server's did).
    const path = this.path!;
    this.path = null;
    await unlink(path).catch(() => {});
    const all = Promise.all(conns.map((c) => c.closed));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.options.closeTimeoutMs ?? 10_000);
    });
    if ((await Promise.race([all, timeout])) === 'timeout') {
      this.log(`nbd export closing: dropping ${this.connections.size} busy connection(s)`);
      for (const c of this.connections) c.destroy();
    }
    clearTimeout(timer);
  }

  /** A connection from the listener (which calls nothing once close() has closed it). */
  private accept(fd: number): void {
    const conn = new NbdConnection(fd, this.target, {
      multiConn: this.options.multiConn,
      description: this.options.description,
      limits: {
        maxBufferedBytes: this.options.maxBufferedBytes ?? DEFAULT_FLOW_LIMITS.maxBufferedBytes,
        maxInflight: this.options.maxInflight ?? DEFAULT_FLOW_LIMITS.maxInflight,
      },
      handshakeTimeoutMs: this.options.handshakeTimeoutMs ?? 10_000,
      log: (m) => this.log(m),
    });
    this.connections.add(conn);
    void conn.closed.then(() => this.connections.delete(conn));
  }

  private log(message: string): void {
    this.options.log?.(message);
  }
}

/** Makes socketPath free to listen on: absent, or a stale socket nobody answers on. */
async function claimSocketPath(socketPath: string): Promise<void> {
  let st;
  try {
    st = await lstat(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new Error(`socket path ${socketPath} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve, reject) => {
    const probe = connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      probe.destroy();
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else reject(new Error(`socket path ${socketPath}: ${err.message}`));
    });
  });
  if (live) throw new Error(`socket path ${socketPath} is in use (another server answers on it)`);
  await unlink(socketPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}
