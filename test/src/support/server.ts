// Helpers for tests that run a StorageServer in-process: a server on 127.0.0.1 port 0, a
// Backend wrapper that records every call (to see what reached the backend, when, and in
// which order), a TCP proxy whose connections a test can cut or hold, and temp directories.
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { StorageServer, type Backend, type RequestContext, type StorageServerOptions, type TokenAuth } from '@wsblk/server';

/** The context of a backend call a test makes itself, outside any session. */
export const TEST_CTX: RequestContext = { session: 'test', epoch: 0, seq: 0 };

export type BackendOp = 'read' | 'write' | 'flush' | 'discard' | 'writeZeroes';

export interface BackendCall {
  op: BackendOp;
  offset: number;
  length: number;
  /** Who asked (session, epoch, seq). */
  ctx: RequestContext;
  /** A copy of the data of a write. */
  data?: Buffer;
  fua?: boolean;
  noUnmap?: boolean;
  /** performance.now() when the call started and when its promise settled. */
  start: number;
  end?: number;
  error?: string;
}

/**
 * Wraps a Backend and records every call. Emits 'start' and 'end' with the BackendCall.
 * Tracks the most bytes of reads and writes running at once.
 */
export class RecordingBackend extends EventEmitter implements Backend {
  readonly calls: BackendCall[] = [];
  private runningBytes = 0;
  maxRunningBytes = 0;
  private running = 0;
  maxRunning = 0;

  constructor(readonly inner: Backend) {
    super();
  }

  get info() {
    return this.inner.info;
  }

  get description(): string {
    return `recording:${this.inner.description}`;
  }

  callsOf(op: BackendOp): BackendCall[] {
    return this.calls.filter((c) => c.op === op);
  }

  /** Resolves at the next call start that matches. */
  nextStart(pred: (c: BackendCall) => boolean = () => true): Promise<BackendCall> {
    return new Promise((resolve) => {
      const on = (c: BackendCall) => {
        if (!pred(c)) return;
        this.off('start', on);
        resolve(c);
      };
      this.on('start', on);
    });
  }

  private async track<T>(call: BackendCall, run: () => Promise<T>): Promise<T> {
    const bytes = call.op === 'read' || call.op === 'write' ? call.length : 0;
    this.calls.push(call);
    this.running++;
    this.runningBytes += bytes;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    this.maxRunningBytes = Math.max(this.maxRunningBytes, this.runningBytes);
    this.emit('start', call);
    try {
      return await run();
    } catch (e) {
      call.error = (e as Error).message;
      throw e;
    } finally {
      call.end = performance.now();
      this.running--;
      this.runningBytes -= bytes;
      this.emit('end', call);
    }
  }

  read(ctx: RequestContext, offset: number, length: number): Promise<Buffer> {
    return this.track({ op: 'read', offset, length, ctx, start: performance.now() }, () => this.inner.read(ctx, offset, length));
  }

  write(ctx: RequestContext, offset: number, data: Buffer, fua: boolean): Promise<void> {
    const call: BackendCall = { op: 'write', offset, length: data.length, ctx, data: Buffer.from(data), fua, start: performance.now() };
    return this.track(call, () => this.inner.write(ctx, offset, data, fua));
  }

  flush(ctx: RequestContext): Promise<void> {
    return this.track({ op: 'flush', offset: 0, length: 0, ctx, start: performance.now() }, () => this.inner.flush(ctx));
  }

  discard(ctx: RequestContext, offset: number, length: number): Promise<void> {
    return this.track({ op: 'discard', offset, length, ctx, start: performance.now() }, () => this.inner.discard(ctx, offset, length));
  }

  writeZeroes(ctx: RequestContext, offset: number, length: number, noUnmap: boolean, fua: boolean): Promise<void> {
    const call: BackendCall = { op: 'writeZeroes', offset, length, ctx, noUnmap, fua, start: performance.now() };
    return this.track(call, () => this.inner.writeZeroes(ctx, offset, length, noUnmap, fua));
  }

  /** performance.now() when close() was called, and how many calls were still running then. */
  closedAt: number | undefined;
  runningAtClose = 0;

  readMeta(): Promise<Buffer | null> {
    return this.inner.readMeta();
  }

  writeMeta(data: Buffer): Promise<void> {
    return this.inner.writeMeta(data);
  }

  close(): Promise<void> {
    this.closedAt = performance.now();
    this.runningAtClose = this.running;
    return this.inner.close();
  }
}

export interface RunningServer {
  server: StorageServer;
  port: number;
  /** ws://127.0.0.1:PORT/<name> */
  url(name: string): string;
  close(): Promise<void>;
}

/** Starts a StorageServer on 127.0.0.1, port 0, with the given exports. */
export async function startServer(
  exports: Record<string, Backend>,
  opts: Omit<StorageServerOptions, 'host' | 'port'> & { auth?: TokenAuth } = {},
): Promise<RunningServer> {
  const server = new StorageServer({ ...opts, host: '127.0.0.1', port: 0 });
  for (const [name, backend] of Object.entries(exports)) server.addExport(name, backend);
  const { port } = await server.listen();
  return {
    server,
    port,
    url: (name) => `ws://127.0.0.1:${port}/${name}`,
    close: () => server.close(),
  };
}

/**
 * A TCP proxy in front of a port. dropAll() cuts every connection (both sides), hold() makes
 * new connections wait (accepted, not forwarded) until release(), stop() refuses new ones.
 */
export class TcpProxy {
  private readonly pairs = new Set<[Socket, Socket | undefined]>();
  private held: Socket[] = [];
  private holding = false;
  private server: Server | undefined;
  port = 0;
  accepted = 0;

  private constructor(readonly targetPort: number) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    const p = new TcpProxy(targetPort);
    await p.listen(0);
    return p;
  }

  private listen(port: number): Promise<void> {
    const server = createServer((client) => this.onClient(client));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        this.port = (server.address() as { port: number }).port;
        resolve();
      });
    });
  }

  url(name: string): string {
    return `ws://127.0.0.1:${this.port}/${name}`;
  }

  get openConnections(): number {
    return this.pairs.size;
  }

  private onClient(client: Socket): void {
    this.accepted++;
    client.on('error', () => {});
    if (this.holding) {
      this.held.push(client);
      return;
    }
    this.forward(client);
  }

  private forward(client: Socket): void {
    const upstream = connect(this.targetPort, '127.0.0.1');
    const pair: [Socket, Socket | undefined] = [client, upstream];
    this.pairs.add(pair);
    upstream.on('error', () => client.destroy());
    client.on('close', () => { upstream.destroy(); this.pairs.delete(pair); });
    upstream.on('close', () => { client.destroy(); this.pairs.delete(pair); });
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Destroys every proxied connection, both sides, without a close handshake. */
  dropAll(): void {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b?.destroy();
    }
    this.pairs.clear();
  }

  hold(): void {
    this.holding = true;
  }

  release(): void {
    this.holding = false;
    const held = this.held;
    this.held = [];
    for (const c of held) if (!c.destroyed) this.forward(c);
  }

  /** Stops accepting (connections are refused) and cuts everything. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const c of this.held) c.destroy();
    this.held = [];
    this.dropAll();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  /** Listens again on the same port after stop(). */
  async restart(): Promise<void> {
    if (!this.server) await this.listen(this.port);
  }
}

/** A port nothing listens on (bound, then closed). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A fresh temp directory and a function that removes it. */
export function tempDir(prefix = 'wsblk-test-'): { dir: string; path(name: string): string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A buffer of `length` bytes filled with a recognisable, non-compressible-ish pattern. */
export function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** A buffer of `length` bytes that lz4 compresses well (repeating text). */
export function compressible(length: number, seed: number): Buffer {
  const text = Buffer.from(`block ${seed} of a compressible payload; `);
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i += text.length) text.copy(b, i, 0, Math.min(text.length, length - i));
  return b;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` every 5 ms until it holds; rejects after timeoutMs. */
export async function waitFor(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms`);
    await sleep(5);
  }
}

/** The part of a BlockTarget that io() needs. */
export interface Submitter {
  submit(req: { op: number; offset: number; length: number; flags: number; payload?: Buffer }, cb: (status: number, data?: Buffer) => void): void;
}

/** Submits one request and resolves with its status and data; fails if the callback runs twice. */
export function io(target: Submitter, req: { op: number; offset: number; length: number; flags?: number; payload?: Buffer }): Promise<{ status: number; data?: Buffer }> {
  return new Promise((resolve, reject) => {
    let calls = 0;
    target.submit({ flags: 0, ...req }, (status, data) => {
      if (++calls > 1) reject(new Error(`callback of ${req.op}@${req.offset} ran ${calls} times`));
      resolve(data ? { status, data } : { status });
    });
  });
}
