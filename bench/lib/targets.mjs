// The NBD targets fio is pointed at, each started as real processes on loopback / Unix sockets:
//   ours     wsblk serve (memory export) <- WebSocket <- wsblk connect --nbd (two hops)
//   nbdkit1  nbdkit memory (one hop)
//   nbdkit2  nbdkit nbd plugin -> nbdkit memory (two hops, the same topology as ours)
//   base     ours, but the wsblk of another checkout (--baseline DIR): a lever's A/B in one run
//   set3     ours over a replica set: three wsblk serve (memory) <- one wsblk connect URL1,URL2,URL3
//   rbd      ours with an RBD image as the export (wsblk serve --export b0=rbd:POOL/IMAGE,conf=FILE)
//   qemurbd  qemu-nbd serving an image of the same size through qemu's rbd driver (one hop to Ceph)
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { sleep, startProc, stopProc, waitFor } from './procs.mjs';

export const WSBLK = fileURLToPath(new URL('../../client/bin/wsblk.js', import.meta.url));

export const TARGETS = {
  ours: 'wsblk (NBD -> ws -> server, memory)',
  nbdkit1: 'nbdkit memory (1 hop)',
  nbdkit2: 'nbdkit nbd -> nbdkit memory (2 hops)',
  base: 'wsblk of --baseline DIR (as ours)',
  set3: 'wsblk over a replica set of 3 servers (memory)',
  baseset3: 'set3 with the wsblk of --baseline DIR',
  rbd: 'wsblk (NBD -> ws -> server, rbd: export on a Ceph image)',
  qemurbd: "qemu-nbd, qemu's rbd driver on a Ceph image (1 hop to Ceph)",
};

/** The wsblk entry point of a checkout (built: client/dist present). */
function wsblkOf(dir) {
  const bin = join(resolve(dir), 'client', 'bin', 'wsblk.js');
  if (!existsSync(join(resolve(dir), 'client', 'dist', 'cli', 'main.js'))) throw new Error(`--baseline ${dir}: not a built wsblk checkout (no client/dist/cli/main.js; run npm ci there)`);
  return bin;
}

const nbdUri = (sock) => `nbd+unix:///?socket=${sock}`;

/**
 * --pin: servers (wsblk serve, nbdkit) run on CPU 1, the client side (our daemon, fio) on CPU 0,
 * as if the servers ran on another host. Without it every process competes for both cores, and
 * a target with more server processes (set3) pays for their CPU on the client's cores.
 */
export const pinning = { on: false, serverCpu: '1', clientCpu: '0' };
const pinned = (cpu, cmd, args) => (pinning.on ? ['taskset', ['-c', cpu, cmd, ...args]] : [cmd, args]);

/** wsblk serve with the given exports; resolves { proc, port } once it listens. */
export async function startWsblkServer({ dir, exports, nodeArgs = [], name = 'wsblk-serve', wsblk = WSBLK }) {
  const args = [...nodeArgs, wsblk, 'serve', '--listen', '127.0.0.1:0', ...exports.flatMap((e) => ['--export', e])];
  const proc = startProc(name, ...pinned(pinning.serverCpu, process.execPath, args), { cwd: dir });
  const m = await waitFor('the server to listen', () => /listening on wss?:\/\/\S*:(\d+)\//.exec(proc.stderr()), { proc, timeoutMs: 30_000 });
  return { proc, port: Number(m[1]) };
}

/** wsblk connect --nbd --foreground; resolves { proc, uri } once the daemon prints its NBD URI. */
export async function startWsblkDaemon({ dir, url, sock, compress = 'none', nodeArgs = [], name = 'wsblk-daemon', wsblk = WSBLK, args: extra = [], runDir = join(dir, 'run') }) {
  const args = [...nodeArgs, wsblk, 'connect', url, '--nbd', sock, '--foreground', '--compress', compress, ...extra];
  const proc = startProc(name, ...pinned(pinning.clientCpu, process.execPath, args), { cwd: dir, env: { WSBLK_RUN_DIR: runDir } });
  const m = await waitFor('the daemon to print its NBD URI', () => /^(nbd\+unix:\S+)$/m.exec(proc.stdout()), { proc, timeoutMs: 30_000 });
  return { proc, uri: m[1] };
}

/** nbdkit in the foreground, dying with us; resolves once its pidfile says it serves the socket. */
async function startNbdkit({ dir, name, sock, port, plugin }) {
  const pidfile = join(dir, `${name}.pid`);
  const where = port ? ['-i', '127.0.0.1', '-p', String(port)] : ['-U', sock];
  const proc = startProc(name, ...pinned(pinning.serverCpu, 'nbdkit', [...where, '-P', pidfile, '-f', '--exit-with-parent', ...plugin]));
  await waitFor(`${name} to listen on ${port ? `127.0.0.1:${port}` : sock}`, () => existsSync(pidfile) && readFileSync(pidfile, 'utf8').trim() !== '', { proc });
  return proc;
}

/**
 * Starts one target. Returns { key, label, uri, procs: { name: proc }, pids: { role: pid }, stop() }.
 */
export async function startTarget(key, { dir, size, compress, nodeArgs = [], nbdkit2Tcp = false, baseline, ceph }) {
  const procs = [];
  const stop = async () => { for (const p of procs.reverse()) await stopProc(p); };
  try {
    if (key === 'ours' || key === 'base' || key === 'rbd') {
      const sock = join(dir, `${key}.sock`);
      const wsblk = key === 'base' ? wsblkOf(baseline) : WSBLK;
      const backend = key === 'rbd' ? `rbd:${ceph.pool}/${ceph.images.rbd},conf=${ceph.conf}` : `memory:${size}`;
      const server = await startWsblkServer({ dir, exports: [`b0=${backend}`], nodeArgs, wsblk, name: `${key}-serve` });
      procs.push(server.proc);
      const daemon = await startWsblkDaemon({ dir, url: `ws://127.0.0.1:${server.port}/b0`, sock, compress, nodeArgs, wsblk, name: `${key}-daemon` });
      procs.push(daemon.proc);
      return { key, label: TARGETS[key], uri: daemon.uri, pids: { server: server.proc.pid, daemon: daemon.proc.pid }, procs: { server: server.proc, daemon: daemon.proc }, stop };
    }
    if (key === 'set3' || key === 'baseset3') {
      const wsblk = key === 'baseset3' ? wsblkOf(baseline) : WSBLK;
      const servers = [];
      for (let i = 0; i < 3; i++) {
        const server = await startWsblkServer({ dir, exports: [`b0=memory:${size}`], nodeArgs, wsblk, name: `${key}-serve${i}` });
        procs.push(server.proc);
        servers.push(server);
      }
      // Its own run dir: `wsblk list` there shows only this device. A short replica timeout: the
      // resync measurement stalls a replica and waits for its ejection.
      const runDir = join(dir, `run-${key}`);
      const daemon = await startWsblkDaemon({
        dir, url: servers.map((s) => `ws://127.0.0.1:${s.port}/b0`).join(','), sock: join(dir, `${key}.sock`), compress, nodeArgs, wsblk,
        name: `${key}-daemon`, args: ['--replica-timeout', '2'], runDir,
      });
      procs.push(daemon.proc);
      // A new set compares the others with the first before they are in sync: wait for that.
      await waitInSync(runDir, 120_000);
      return {
        key, label: TARGETS[key], uri: daemon.uri, runDir,
        pids: { daemon: daemon.proc.pid, ...Object.fromEntries(servers.map((s, i) => [`server${i}`, s.proc.pid])) },
        procs: { daemon: daemon.proc, ...Object.fromEntries(servers.map((s, i) => [`server${i}`, s.proc])) }, stop,
      };
    }
    if (key === 'nbdkit1') {
      const sock = join(dir, 'nbdkit1.sock');
      const mem = await startNbdkit({ dir, name: 'nbdkit1-memory', sock, plugin: ['memory', String(size)] });
      procs.push(mem);
      return { key, label: TARGETS[key], uri: nbdUri(sock), pids: { memory: mem.pid }, procs: { memory: mem }, stop };
    }
    if (key === 'nbdkit2') {
      const back = join(dir, 'nbdkit2-back.sock');
      const front = join(dir, 'nbdkit2.sock');
      // The hop between the two nbdkits: a Unix socket by default, loopback TCP (as our
      // WebSocket hop is) with --nbdkit2-tcp.
      const port = nbdkit2Tcp ? await freePort() : undefined;
      const mem = await startNbdkit({ dir, name: 'nbdkit2-memory', sock: back, port, plugin: ['memory', String(size)] });
      procs.push(mem);
      const fwd = await startNbdkit({ dir, name: 'nbdkit2-nbd', sock: front, plugin: ['nbd', ...(port ? ['hostname=127.0.0.1', `port=${port}`] : [`socket=${back}`])] });
      procs.push(fwd);
      return { key, label: TARGETS[key], uri: nbdUri(front), pids: { memory: mem.pid, forwarder: fwd.pid }, procs: { memory: mem, forwarder: fwd }, stop };
    }
    if (key === 'qemurbd') {
      const sock = join(dir, 'qemurbd.sock');
      // cache=writeback (qemu-nbd's default) turns librbd's cache on (rbd_cache=true), as our
      // backend leaves it; flushes (fio's, FUA) reach librbd either way. --persistent: fio
      // connects once per run. A connection made before the image is open waits in the listen
      // backlog (qemu-nbd accepts only from its main loop), so the socket means ready.
      const image = `rbd:${ceph.pool}/${ceph.images.qemurbd}:conf=${ceph.conf}`;
      const proc = startProc('qemu-nbd-rbd', ...pinned(pinning.serverCpu, 'qemu-nbd', [
        '--format=raw', '--cache=writeback', '--discard=unmap', '--persistent', '--shared=4', '-k', sock, image,
      ]));
      procs.push(proc);
      await waitFor(`qemu-nbd to listen on ${sock}`, () => existsSync(sock), { proc, timeoutMs: 30_000 });
      return { key, label: TARGETS[key], uri: nbdUri(sock), pids: { qemuNbd: proc.pid }, procs: { qemuNbd: proc }, stop };
    }
    throw new Error(`unknown target '${key}'`);
  } catch (e) {
    await stop();
    throw e;
  }
}

/** A TCP port free on 127.0.0.1 right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const execFileP = promisify(execFile);

/** The one device of a run dir, as `wsblk list --json` shows it. */
export async function listDevice(runDir) {
  const { stdout } = await execFileP(process.execPath, [WSBLK, 'list', '--json'], { env: { ...process.env, WSBLK_RUN_DIR: runDir } });
  return JSON.parse(stdout)[0];
}

/** Waits until every replica of the run dir's device is in sync. */
export async function waitInSync(runDir, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = await listDevice(runDir).catch(() => null);
    if (d?.replicas?.length && d.replicas.every((r) => r.state === 'in-sync')) return d;
    if (Date.now() > deadline) throw new Error(`the replica set is not in sync after ${timeoutMs / 1000} s: ${JSON.stringify(d?.replicas)}`);
    await sleep(250);
  }
}
