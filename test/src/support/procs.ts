// Real processes for integration and fault tests: the wsblk CLI (server, daemon), fio, a TCP
// proxy that can cut connections. Everything listens on 127.0.0.1 and stops by itself.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import type { Readable } from 'node:stream';

export const WSBLK = fileURLToPath(new URL('../../../client/bin/wsblk.js', import.meta.url));
const execFileP = promisify(execFile);

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A temp dir removed at the end of the test. */
export function tempDir(t: TestContext, prefix = 'wsblk-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(async () => {
    // Devices connected with WSBLK_RUN_DIR=<dir>/run must not outlive their run dir: after
    // hooks run in order, so this one may come before the test's own disconnect.
    if (existsSync(join(dir, 'run'))) await wsblk(['disconnect', '--all'], { WSBLK_RUN_DIR: join(dir, 'run') });
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/**
 * Fails the test when a tool is missing under CI=true; skips it (with the reason) elsewhere.
 * Returns false when the caller should return.
 */
export async function requireTool(t: TestContext, tool: string): Promise<boolean> {
  try {
    await execFileP('sh', ['-c', `command -v ${tool}`]);
    return true;
  } catch {
    if (process.env.CI === 'true') throw new Error(`${tool} is not installed (CI must install it: see .ci/run)`);
    t.skip(`${tool} is not installed`);
    return false;
  }
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = createConnection(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); r(true); });
      s.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

export interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** Resolves once a child's output pipe has delivered everything (or is gone). */
function pipeEnded(s: Readable): Promise<void> {
  if (s.readableEnded || s.destroyed) return Promise.resolve();
  return new Promise((r) => {
    s.once('end', () => r());
    s.once('close', () => r());
  });
}

/** Spawns a process with output collected (and logged on failure by the caller). */
export function startProc(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  // No child outlives the test run: ask politely first, then SIGKILL (see stopProc).
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code, sig) => {
    const result = code ?? (sig ? -1 : null);
    // 'exit' can come before the last output is read from the pipes: wait for both to end, so a
    // test that reads output() after `exited` sees all of it (at most 2 s: a grandchild that
    // inherited them may hold them open).
    const timer = setTimeout(() => r(result), 2000);
    void Promise.all([pipeEnded(child.stdout!), pipeEnded(child.stderr!)]).then(() => {
      clearTimeout(timer);
      r(result);
    });
  }));
  return { child, output: () => out, exited };
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. */
export async function stopProc(p: Proc, graceMs = 20_000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
  await p.exited;
  clearTimeout(timer);
}

/** `wsblk serve` as a child process; resolves once it listens. Killed at the end of the test. */
export async function startServer(t: TestContext, port: number, exportsSpec: string[], env: NodeJS.ProcessEnv = {}, more: string[] = []): Promise<Proc> {
  const args = [WSBLK, 'serve', '--listen', `127.0.0.1:${port}`, ...exportsSpec.flatMap((e) => ['--export', e]), ...more];
  const p = startProc(process.execPath, args, env);
  t.after(() => { p.child.kill('SIGKILL'); });
  await Promise.race([
    waitForPort(port),
    p.exited.then((code) => { throw new Error(`server exited (${code}) before listening:\n${p.output()}`); }),
  ]);
  return p;
}

/** Runs the CLI to completion. */
export async function wsblk(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [WSBLK, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export interface FioResult {
  code: number;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  raw: string;
  errors: number;
}

/** Runs fio with JSON output; `errors` sums total_err over jobs. */
export async function fio(args: string[], timeoutMs = 300_000): Promise<FioResult> {
  const p = startProc('fio', ['--output-format=json', ...args]);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  const code = (await p.exited) ?? -1;
  clearTimeout(timer);
  const raw = p.output();
  let json: any = null; // eslint-disable-line @typescript-eslint/no-explicit-any
  const start = raw.indexOf('{');
  try {
    json = JSON.parse(raw.slice(start, raw.lastIndexOf('}') + 1));
  } catch {
    /* leave null: the caller asserts on code and prints raw */
  }
  const errors = json?.jobs?.reduce((n: number, j: { error?: number; total_err?: number }) => n + (j.error ?? 0) + (j.total_err ?? 0), 0) ?? -1;
  return { code, json, raw, errors };
}

/** A TCP proxy 127.0.0.1:listen -> 127.0.0.1:target that can cut every live connection. */
export class CutProxy {
  private readonly server: Server;
  private readonly pairs = new Set<[Socket, Socket]>();
  cuts = 0;

  constructor(readonly target: number) {
    this.server = createServer((a) => {
      const b = createConnection(this.target, '127.0.0.1');
      const pair: [Socket, Socket] = [a, b];
      this.pairs.add(pair);
      const drop = () => { a.destroy(); b.destroy(); this.pairs.delete(pair); };
      a.on('error', drop); b.on('error', drop); a.on('close', drop); b.on('close', drop);
      a.pipe(b); b.pipe(a);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return (this.server.address() as { port: number }).port;
  }

  /** Destroys every proxied connection (both sides), as a cut cable or a reset would. */
  cut(): number {
    const n = this.pairs.size;
    for (const [a, b] of this.pairs) { a.resetAndDestroy(); b.resetAndDestroy(); }
    this.pairs.clear();
    this.cuts++;
    return n;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** Reads a file's text if it exists (for diagnostics). */
export function readIf(path: string): string {
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}
