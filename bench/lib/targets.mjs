// The NBD targets fio is pointed at, each started as real processes on loopback / Unix sockets:
//   ours     wsblk serve (memory export) <- WebSocket <- wsblk connect --nbd (two hops)
//   nbdkit1  nbdkit memory (one hop)
//   nbdkit2  nbdkit nbd plugin -> nbdkit memory (two hops, the same topology as ours)
//   base     ours, but the wsblk of another checkout (--baseline DIR): a lever's A/B in one run
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { startProc, stopProc, waitFor } from './procs.mjs';

export const WSBLK = fileURLToPath(new URL('../../client/bin/wsblk.js', import.meta.url));

export const TARGETS = {
  ours: 'wsblk (NBD -> ws -> server, memory)',
  nbdkit1: 'nbdkit memory (1 hop)',
  nbdkit2: 'nbdkit nbd -> nbdkit memory (2 hops)',
  base: 'wsblk of --baseline DIR (as ours)',
};

/** The wsblk entry point of a checkout (built: client/dist present). */
function wsblkOf(dir) {
  const bin = join(resolve(dir), 'client', 'bin', 'wsblk.js');
  if (!existsSync(join(resolve(dir), 'client', 'dist', 'cli', 'main.js'))) throw new Error(`--baseline ${dir}: not a built wsblk checkout (no client/dist/cli/main.js; run npm ci there)`);
  return bin;
}

const nbdUri = (sock) => `nbd+unix:///?socket=${sock}`;

/** wsblk serve with the given exports; resolves { proc, port } once it listens. */
export async function startWsblkServer({ dir, exports, nodeArgs = [], name = 'wsblk-serve', wsblk = WSBLK }) {
  const args = [...nodeArgs, wsblk, 'serve', '--listen', '127.0.0.1:0', ...exports.flatMap((e) => ['--export', e])];
  const proc = startProc(name, process.execPath, args, { cwd: dir });
  const m = await waitFor('the server to listen', () => /listening on wss?:\/\/\S*:(\d+)\//.exec(proc.stderr()), { proc, timeoutMs: 30_000 });
  return { proc, port: Number(m[1]) };
}

/** wsblk connect --nbd --foreground; resolves { proc, uri } once the daemon prints its NBD URI. */
export async function startWsblkDaemon({ dir, url, sock, compress = 'none', nodeArgs = [], name = 'wsblk-daemon', wsblk = WSBLK }) {
  const args = [...nodeArgs, wsblk, 'connect', url, '--nbd', sock, '--foreground', '--compress', compress];
  const proc = startProc(name, process.execPath, args, { cwd: dir, env: { WSBLK_RUN_DIR: join(dir, 'run') } });
  const m = await waitFor('the daemon to print its NBD URI', () => /^(nbd\+unix:\S+)$/m.exec(proc.stdout()), { proc, timeoutMs: 30_000 });
  return { proc, uri: m[1] };
}

/** nbdkit in the foreground, dying with us; resolves once its pidfile says it serves the socket. */
async function startNbdkit({ dir, name, sock, port, plugin }) {
  const pidfile = join(dir, `${name}.pid`);
  const where = port ? ['-i', '127.0.0.1', '-p', String(port)] : ['-U', sock];
  const proc = startProc(name, 'nbdkit', [...where, '-P', pidfile, '-f', '--exit-with-parent', ...plugin]);
  await waitFor(`${name} to listen on ${port ? `127.0.0.1:${port}` : sock}`, () => existsSync(pidfile) && readFileSync(pidfile, 'utf8').trim() !== '', { proc });
  return proc;
}

/**
 * Starts one target. Returns { key, label, uri, procs: { name: proc }, pids: { role: pid }, stop() }.
 */
export async function startTarget(key, { dir, size, compress, nodeArgs = [], nbdkit2Tcp = false, baseline }) {
  const procs = [];
  const stop = async () => { for (const p of procs.reverse()) await stopProc(p); };
  try {
    if (key === 'ours' || key === 'base') {
      const sock = join(dir, `${key}.sock`);
      const wsblk = key === 'base' ? wsblkOf(baseline) : WSBLK;
      const server = await startWsblkServer({ dir, exports: [`b0=memory:${size}`], nodeArgs, wsblk, name: `${key}-serve` });
      procs.push(server.proc);
      const daemon = await startWsblkDaemon({ dir, url: `ws://127.0.0.1:${server.port}/b0`, sock, compress, nodeArgs, wsblk, name: `${key}-daemon` });
      procs.push(daemon.proc);
      return { key, label: TARGETS[key], uri: daemon.uri, pids: { server: server.proc.pid, daemon: daemon.proc.pid }, procs: { server: server.proc, daemon: daemon.proc }, stop };
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
