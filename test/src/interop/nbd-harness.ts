// What the NBD interop tests talk to, decided in one place: the whole path. A real NBD client
// -> NbdExport -> RemoteDisk (WebSocket, loopback) -> StorageServer -> backend. Set
// WSBLK_INTEROP_TARGET=memory to test the NBD frontend alone over an in-memory target.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';
import { NbdExport, RemoteDisk } from '@wsblk/client';
import { MemoryBackend, StorageServer } from '@wsblk/server';
import { MemoryTarget } from '../support/memory-target.js';

/** Size of the disk every interop test gets. */
export const DISK_BYTES = 128 << 20;

export interface RunningExport {
  /** nbd+unix URI of the default export. */
  uri: string;
  close(): Promise<void>;
}

export type ExportFactory = (socketPath: string) => Promise<RunningExport>;

const memoryExport: ExportFactory = async (socketPath) => {
  const target = new MemoryTarget({ size: DISK_BYTES, exportName: 'mem', maxPayload: 4 << 20 });
  // One in-memory store behind every connection: a flush on one covers all (multi-conn is safe).
  const exp = new NbdExport(target, { multiConn: true, description: 'wsblk interop memory disk' });
  await exp.listen(socketPath);
  return { uri: nbdUri(socketPath), close: () => exp.close() };
};

const remoteExport: ExportFactory = async (socketPath) => {
  const server = new StorageServer({ port: 0 });
  server.addExport('mem', new MemoryBackend(DISK_BYTES));
  const { port } = await server.listen();
  const disk = await RemoteDisk.connect({ url: `ws://127.0.0.1:${port}/mem`, compress: 'lz4', lendReads: true });
  // One transport behind every NBD connection: a flush covers writes of all of them.
  const exp = new NbdExport(disk, { multiConn: true, description: 'wsblk interop remote disk' });
  await exp.listen(socketPath);
  return {
    uri: nbdUri(socketPath),
    close: async () => {
      await exp.close();
      await disk.close();
      await server.close();
    },
  };
};

export const startExport: ExportFactory = process.env.WSBLK_INTEROP_TARGET === 'memory' ? memoryExport : remoteExport;

export function nbdUri(socketPath: string, name = ''): string {
  return `nbd+unix:///${encodeURIComponent(name)}?socket=${socketPath}`;
}

/** A temp dir and a running export in it, both gone after the test. */
export async function exportForTest(t: TestContext): Promise<{ uri: string; dir: string; socketPath: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'nbd-interop-'));
  const socketPath = join(dir, 'nbd.sock');
  const running = await startExport(socketPath);
  t.after(async () => {
    await running.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { uri: running.uri, dir, socketPath };
}

/**
 * True when every tool is on PATH. A missing one fails the test under CI=true and skips it
 * otherwise.
 */
export function haveTools(t: TestContext, ...tools: string[]): boolean {
  const missing = tools.filter((tool) => !onPath(tool));
  if (missing.length === 0) return true;
  const reason = `missing tool(s): ${missing.join(', ')}`;
  if (process.env.CI === 'true') throw new Error(`${reason} (required when CI=true)`);
  t.skip(reason);
  return false;
}

function onPath(tool: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, tool), constants.X_OK);
      return true;
    } catch {
      // keep looking
    }
  }
  return false;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a client without blocking this process's event loop (the export lives here too).
 * Never rejects: the exit code is in the result.
 */
export function run(cmd: string, args: string[], timeoutMs = 300_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Like run, but a non-zero exit fails with the tool's output in the message. */
export async function runOk(cmd: string, args: string[], timeoutMs?: number): Promise<RunResult> {
  const r = await run(cmd, args, timeoutMs);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/**
 * nbdcopy of `bytes` random bytes from a file in `dir` into the export, then of the whole
 * export back out: the data sent and everything that came back.
 */
export async function nbdcopyInAndOut(uri: string, dir: string, bytes: number): Promise<{ data: Buffer; copied: Buffer }> {
  const src = join(dir, 'in.img');
  const back = join(dir, 'out.img');
  const data = randomBytes(bytes);
  writeFileSync(src, data);
  await runOk('nbdcopy', [src, uri]);
  await runOk('nbdcopy', [uri, back]);
  return { data, copied: readFileSync(back) };
}
