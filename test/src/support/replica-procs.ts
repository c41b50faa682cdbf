// A replica set of real processes for fault tests: `wsblk serve` processes with one memory
// export each (restartable on the same port), a `wsblk connect URL1,URL2,... --nbd` daemon, its
// `wsblk list --json`, and a comparison of the replicas by checksum (what `wsblk verify` does).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { compareTargets, type Mismatch } from '@wsblk/client';
import { Errno } from '@wsblk/shared';
import { RawClient } from './raw-client.js';
import { WSBLK, fio, freePort, sleep, startProc, startServer, stopProc, tempDir, wsblk, type FioResult, type Proc } from './procs.js';
import { TcpProxy } from './server.js';

/**
 * One storage server with export `d` (memory: its data and record are gone after a kill; or a
 * file, which stays, and which several servers may export as gateways of the same data).
 */
export class ReplicaServer {
  proc!: Proc;
  private constructor(private readonly t: TestContext, readonly port: number, private readonly exportSpec: string, private readonly args: string[]) {}

  static async start(t: TestContext, size: string): Promise<ReplicaServer> {
    return ReplicaServer.exporting(t, `d=memory:${size}`);
  }

  /** A server of `d=SPEC` (e.g. d=file:PATH,size=64M), with more `serve` arguments. */
  static async exporting(t: TestContext, exportSpec: string, args: string[] = []): Promise<ReplicaServer> {
    const s = new ReplicaServer(t, await freePort(), exportSpec, args);
    await s.restart();
    return s;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/d`;
  }

  /** Starts it again on the same port (after kill): the same export (a memory one empty). */
  async restart(): Promise<void> {
    this.proc = await startServer(this.t, this.port, [this.exportSpec], {}, this.args);
  }

  async kill(): Promise<void> {
    this.proc.child.kill('SIGKILL');
    await this.proc.exited;
  }

  signal(sig: 'SIGSTOP' | 'SIGCONT'): void {
    this.proc.child.kill(sig);
  }
}

export async function startReplicas(t: TestContext, n: number, size = '64M'): Promise<ReplicaServer[]> {
  return Promise.all(Array.from({ length: n }, () => ReplicaServer.start(t, size)));
}

export interface SetDaemon {
  proc: Proc;
  uri: string;
  runDir: string;
  sock: string;
}

/** `wsblk connect URL1,URL2,... --nbd SOCK --foreground ARGS`; resolves once it serves. */
export async function startSetDaemon(t: TestContext, dir: string, urls: string[], args: string[] = [], name = 'set'): Promise<SetDaemon> {
  const runDir = join(dir, 'run');
  const sock = join(dir, `${name}.sock`);
  const proc = startProc(process.execPath, [WSBLK, 'connect', urls.join(','), '--nbd', sock, '--foreground', ...args], { WSBLK_RUN_DIR: runDir });
  t.after(() => stopProc(proc, 5000));
  const deadline = Date.now() + 30_000;
  while (!proc.output().includes('nbd+unix://')) {
    if (Date.now() > deadline || proc.child.exitCode !== null) throw new Error(`daemon did not become ready:\n${proc.output()}`);
    await sleep(50);
  }
  return { proc, uri: `nbd+unix:///?socket=${sock}`, runDir, sock };
}

export interface InSyncSet {
  dir: string;
  servers: ReplicaServer[];
  /** Proxies in front of the last `proxied` servers (to cut them off). */
  proxies: TcpProxy[];
  /** The URLs the set was connected with (through the proxies). */
  urls: string[];
  /** Every server's own URL (to compare them). */
  direct: string[];
  d: SetDaemon;
}

/** n servers, the last `proxied` of them behind a TcpProxy, and a set daemon over them, in sync. */
export async function inSyncSet(t: TestContext, n: number, args: string[] = [], proxied = 0): Promise<InSyncSet> {
  const dir = tempDir(t);
  const servers = await startReplicas(t, n);
  const plain = n - proxied;
  const proxies = await Promise.all(servers.slice(plain).map((s) => TcpProxy.start(s.port)));
  t.after(() => Promise.all(proxies.map((p) => p.stop())));
  const urls = servers.map((s, i) => (i < plain ? s.url : proxies[i - plain]!.url('d')));
  const d = await startSetDaemon(t, dir, urls, args);
  // A new set compares the others with the first before they are in sync.
  await waitSet(d.runDir, allInSync, 'the new set is in sync', 60_000, d.proc);
  return { dir, servers, proxies, urls, direct: servers.map((s) => s.url), d };
}

export interface ReplicaView {
  url: string;
  state: string;
  connected: boolean;
  outstanding: number;
  resync?: { percent: number; bytesCopied: number; compare: boolean };
  reason?: string;
}

export interface SetView {
  id: string;
  epoch: number;
  inSync: number;
  replicas: ReplicaView[];
}

/** The one device of a run dir, as `wsblk list --json` shows it. */
export async function listSet<V = SetView>(runDir: string): Promise<V> {
  const r = await wsblk(['list', '--json'], { WSBLK_RUN_DIR: runDir });
  assert.equal(r.code, 0, r.stderr);
  const list = JSON.parse(r.stdout) as V[];
  assert.equal(list.length, 1, r.stdout);
  return list[0]!;
}

/** Polls `wsblk list --json` until `cond` holds; fails with the last view after timeoutMs. */
export async function waitSet<V = SetView>(runDir: string, cond: (s: V) => boolean, what: string, timeoutMs = 60_000, log?: Proc): Promise<V> {
  const deadline = Date.now() + timeoutMs;
  let last: V | undefined;
  for (;;) {
    try {
      last = await listSet<V>(runDir);
      if (cond(last)) return last;
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms; last: ${JSON.stringify(last)}${log ? `\ndaemon:\n${log.output().slice(-4000)}` : ''}`);
    await sleep(200);
  }
}

export const stateOf = (s: SetView, url: string) => s.replicas.find((r) => r.url === url)?.state;
export const allInSync = (s: SetView) => s.replicas.every((r) => r.state === 'in-sync');

/**
 * Compares the replicas region by region with CHECKSUM over read-only connections, beside the
 * device's writer (what `wsblk verify` does). Over RawClient: a read-only RemoteDisk refuses
 * CHECKSUM on the client side (EPERM; see the report of issue 13's tests).
 */
export async function compareReplicas(urls: string[]): Promise<Mismatch[]> {
  const clients = await Promise.all(urls.map((url) => RawClient.connect(url)));
  try {
    const targets = await Promise.all(clients.map((c) => checksumTarget(c)));
    return await compareTargets(targets);
  } finally {
    for (const c of clients) c.ws.terminate();
  }
}

type BlockTarget = Parameters<typeof compareTargets>[0][number];

/** The part of a BlockTarget compareTargets uses, over one read-only raw connection. */
async function checksumTarget(c: RawClient): Promise<BlockTarget> {
  const w = await c.hello({ readOnly: true });
  let seq = 0;
  return {
    info: { exportName: w.exportName, size: w.size, blockSize: 512, readOnly: true, flush: false, fua: false, discard: false, writeZeroes: false, maxPayload: w.maxPayload },
    submit(req, cb) {
      const s = ++seq;
      c.roundTrip([{ seq: s, op: req.op, flags: 0, offset: req.offset, length: req.length }]).then(
        (m) => cb(m.get(s)!.status, m.get(s)!.data), () => cb(Errno.EIO));
    },
  };
}

/** fio randwrite then verify (crc32c) over the NBD export; `rate` throttles the write phase. */
export function fioVerify(uri: string, size: string, extra: string[] = []): Promise<FioResult> {
  return fio([
    '--name=verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16',
    `--size=${size}`, '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0',
    '--random_generator=tausworthe64', ...extra,
  ]);
}

/** Writes [offset, offset + size) sequentially with verify headers (or, verifyOnly, checks them). */
export function fioFill(uri: string, offset: string, size: string, verifyOnly = false): Promise<FioResult> {
  return fio([
    '--name=fill', '--ioengine=nbd', `--uri=${uri}`, '--rw=write', '--bs=64k', '--iodepth=8', `--offset=${offset}`,
    `--size=${size}`, '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0',
    ...(verifyOnly ? ['--verify_only=1'] : []),
  ]);
}

/** Writes (or, verifyOnly, reads and checks `loops` times) a fixed 32-bit pattern over [0, size). */
export function fioPattern(uri: string, size: string, pattern: string, verifyOnly = false, loops = 1): Promise<FioResult> {
  return fio([
    '--name=pattern', '--ioengine=nbd', `--uri=${uri}`, '--rw=write', '--bs=64k', '--iodepth=8', `--size=${size}`,
    '--verify=pattern', `--verify_pattern=${pattern}`, '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0',
    ...(verifyOnly ? ['--verify_only=1', `--loops=${loops}`] : []),
  ]);
}

/** Asserts fio ended well: exit 0, no error, every block written and verified. */
export function assertVerified(r: FioResult, bytes: number, context: () => string): void {
  assert.equal(r.code, 0, `fio failed:\n${r.raw.slice(-3000)}\n${context()}`);
  assert.equal(r.errors, 0, 'fio counted I/O errors');
  const job = r.json.jobs[0];
  assert.equal(job.write.io_bytes, bytes, 'every block was written');
  assert.equal(job.read.io_bytes, bytes, 'every block was read back and verified');
}
