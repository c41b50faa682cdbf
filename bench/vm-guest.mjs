// The guest half of `node bench/run.mjs --vm`: runs as root inside test/vm's qemu guest (started
// by bench/vm.mjs through test/vm/run.sh). Sets up the block devices of the config's targets,
//   ublk       wsblk serve (memory) <- ws <- wsblk connect (ublk, /dev/ublkbN)
//   nbd-tcp    nbdkit memory on 127.0.0.1:10809 <- nbd-client (kernel nbd over TCP, /dev/nbdN)
//   nbd        nbdkit memory on a Unix socket <- nbd-client -unix (kernel nbd, /dev/nbdN)
//   wsblk-nbd  wsblk serve <- ws <- wsblk connect --nbd SOCK <- nbd-client -unix (/dev/nbdN)
// prefills the region every job touches, runs the same fio jobs (direct I/O on the block device)
// on each target, interleaved, and writes every run's figures to $WSBLK_VM_OUT/RESULT_FILE.
// Medians, ratios and the report are the host's job (bench/vm.mjs).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { cpuSecondsOf as cpuSeconds, installCleanup, runCommand, startProc, stopAll, stopProc, tail, waitFor } from './lib/procs.mjs';
import { parseFioJob, runFio } from './lib/fio.mjs';
import { WSBLK } from './lib/targets.mjs';
import { CONFIG_FILE, RESULT_FILE, VM_JOBS } from './vm-common.mjs';

const OUT = process.env.WSBLK_VM_OUT;
if (!OUT || !process.env.WSBLK_VM) {
  process.stderr.write('vm-guest: runs inside the test VM only (node bench/run.mjs --vm starts it)\n');
  process.exit(2);
}
const cfg = JSON.parse(readFileSync(join(OUT, CONFIG_FILE), 'utf8'));
const DIR = '/tmp/wsblk-bench-vm';
const RUN_DIR = join(DIR, 'run');
mkdirSync(RUN_DIR, { recursive: true });
process.chdir(DIR);

const t0 = Date.now();
const log = (msg) => process.stderr.write(`bench-vm guest: [${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}\n`);
/** nbdkit's port for nbd-tcp: the guest's loopback is ours alone, so the NBD port is free. */
const NBD_TCP_PORT = 10809;
const START_TIMEOUT_MS = 120_000; // node starts slowly under TCG, slower still on a busy host

function version(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n')[0];
  } catch (e) {
    return (e.stdout || e.stderr || '').toString().trim().split('\n')[0] || null;
  }
}

/** Busy and total seconds of all guest CPUs so far (from /proc/stat). */
function guestCpu() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = f[3] + (f[4] || 0);
  return { busy: (total - idle) / 100, total: total / 100 };
}

/** What the kernel says about a block device's queue (how each side is set up). */
function queueInfo(dev) {
  const name = dev.replace('/dev/', '');
  const read = (f) => { try { return readFileSync(`/sys/block/${name}/${f}`, 'utf8').trim(); } catch { return null; } };
  let hwQueues = null;
  try { hwQueues = readdirSync(`/sys/block/${name}/mq`).length; } catch { /* no mq dir */ }
  return {
    device: dev, sizeBytes: Number(read('size')) * 512, hwQueues,
    nrRequests: Number(read('queue/nr_requests')), maxSectorsKb: Number(read('queue/max_sectors_kb')),
    logicalBlockSize: Number(read('queue/logical_block_size')), scheduler: /\[(\S+)\]/.exec(read('queue/scheduler') ?? '')?.[1] ?? null,
  };
}

async function startServer(exports) {
  const args = [WSBLK, 'serve', '--listen', '127.0.0.1:0', ...exports.flatMap((e) => ['--export', e])];
  const proc = startProc('wsblk-serve', process.execPath, args, { cwd: DIR });
  const m = await waitFor('the server to listen', () => /listening on wss?:\/\/\S*:(\d+)\//.exec(proc.stderr()), { proc, timeoutMs: START_TIMEOUT_MS, intervalMs: 100 });
  return { proc, port: Number(m[1]) };
}

/** A free /dev/nbdN (no size, no pid), skipping the ones taken. */
function freeNbd(taken) {
  for (let i = 0; i < 16; i++) {
    const dev = `/dev/nbd${i}`;
    if (taken.has(dev) || !existsSync(dev)) continue;
    if (existsSync(`/sys/block/nbd${i}/pid`)) continue;
    let size = '0';
    try { size = readFileSync(`/sys/block/nbd${i}/size`, 'utf8').trim(); } catch { /* none */ }
    if (size === '0') return dev;
  }
  throw new Error('no free /dev/nbdN (is the nbd module loaded?)');
}

const nbdTaken = new Set();

/**
 * nbd-client -unix SOCK /dev/nbdN, or nbd-client HOST PORT /dev/nbdN for { host, port }; returns
 * the device and how to detach it.
 */
async function attachNbd(where) {
  const dev = freeNbd(nbdTaken);
  nbdTaken.add(dev);
  // -N '': nbdkit's default export by name (newstyle), which also spares nbd-client's warning
  // about the oldstyle protocol it no longer speaks.
  const to = typeof where === 'string' ? ['-unix', where] : [where.host, String(where.port), '-N', ''];
  const args = [...to, dev, '-b', String(cfg.blockSize), ...(cfg.nbdConnections > 1 ? ['-C', String(cfg.nbdConnections)] : [])];
  const r = await runCommand(`nbd-client ${dev}`, 'nbd-client', args, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`nbd-client ${args.join(' ')} failed (exit ${r.code ?? r.signal}): ${tail(r.stdout + r.stderr, 4)}`);
  await waitFor(`${dev} to get its size`, () => readFileSync(`/sys/block/${dev.slice(5)}/size`, 'utf8').trim() !== '0', { timeoutMs: 30_000 });
  return {
    dev, args,
    detach: async () => {
      const d = await runCommand(`nbd-client -d ${dev}`, 'nbd-client', ['-d', dev], { timeoutMs: 30_000 });
      if (d.code !== 0) log(`nbd-client -d ${dev}: exit ${d.code ?? d.signal}: ${tail(d.stdout + d.stderr, 2)}`);
    },
  };
}

/** Starts one target; returns { key, device, pids, procs, setup, stop() }. */
async function startTarget(key, server) {
  const procs = [];
  const detach = [];
  const stop = async () => {
    for (const d of detach.reverse()) await d();
    for (const p of procs.reverse()) await stopProc(p, 10_000);
  };
  try {
    if (key === 'ublk') {
      // --block-size always given: `connect --foreground` without it fails with "logicalBlockSize
      // must be 512 or 4096" (commander does not run the option's parser on its default '512').
      const args = [WSBLK, 'connect', `ws://127.0.0.1:${server.port}/ublk`, '--foreground', '--no-supervise',
        '--block-size', String(cfg.blockSize), '--compress', cfg.compress,
        ...(cfg.queues ? ['--queues', String(cfg.queues)] : []), ...(cfg.depth ? ['--depth', String(cfg.depth)] : [])];
      const proc = startProc('wsblk-connect-ublk', process.execPath, args, { cwd: DIR, env: { WSBLK_RUN_DIR: RUN_DIR } });
      procs.push(proc);
      const m = await waitFor('the ublk daemon to print its device', () => /^(\/dev\/ublkb\d+)$/m.exec(proc.stdout()), { proc, timeoutMs: START_TIMEOUT_MS, intervalMs: 100 });
      const device = m[1];
      await waitFor(`${device} to appear`, () => existsSync(device), { proc, timeoutMs: 30_000 });
      return { key, device, pids: { daemon: proc.pid, server: server.proc.pid }, procs: { daemon: proc, server: server.proc }, setup: { connect: args.slice(1).join(' ') }, stop };
    }
    if (key === 'nbd' || key === 'nbd-tcp') {
      const sock = join(DIR, `${key}.sock`);
      const pidfile = join(DIR, `${key}.pid`);
      const tcp = { host: '127.0.0.1', port: NBD_TCP_PORT };
      const listen = key === 'nbd' ? ['-U', sock] : ['-i', tcp.host, '-p', String(tcp.port)];
      const args = [...listen, '-P', pidfile, '-f', '--exit-with-parent', 'memory', cfg.size];
      const proc = startProc(`nbdkit (${key})`, 'nbdkit', args);
      procs.push(proc);
      await waitFor(`nbdkit (${key}) to listen`, () => existsSync(pidfile) && readFileSync(pidfile, 'utf8').trim() !== '', { proc, timeoutMs: 60_000 });
      const a = await attachNbd(key === 'nbd' ? sock : tcp);
      detach.push(a.detach);
      return { key, device: a.dev, pids: { nbdkit: proc.pid }, procs: { nbdkit: proc }, setup: { nbdkit: args.join(' '), nbdClient: a.args.join(' ') }, stop };
    }
    if (key === 'wsblk-nbd') {
      const sock = join(DIR, 'wsblk-nbd.sock');
      const args = [WSBLK, 'connect', `ws://127.0.0.1:${server.port}/nbd`, '--nbd', sock, '--foreground', '--compress', cfg.compress];
      const proc = startProc('wsblk-connect-nbd', process.execPath, args, { cwd: DIR, env: { WSBLK_RUN_DIR: RUN_DIR } });
      procs.push(proc);
      await waitFor('the NBD daemon to print its URI', () => /^nbd\+unix:\S+$/m.test(proc.stdout()), { proc, timeoutMs: START_TIMEOUT_MS, intervalMs: 100 });
      const a = await attachNbd(sock);
      detach.push(a.detach);
      return { key, device: a.dev, pids: { daemon: proc.pid, server: server.proc.pid }, procs: { daemon: proc, server: server.proc }, setup: { connect: args.slice(1).join(' '), nbdClient: a.args.join(' ') }, stop };
    }
    throw new Error(`unknown target ${key}`);
  } catch (e) {
    await stop();
    throw e;
  }
}

const fioCommon = (dev) => ({ ioengine: cfg.ioengine, direct: '1', filename: dev, size: cfg.region });

async function prefill(t) {
  const started = Date.now();
  const { json } = await runFio({
    dir: DIR, tag: `prefill-${t.key}`, timeoutMs: 600_000,
    common: fioCommon(t.device),
    sections: [{ name: 'prefill', rw: 'write', bs: '1M', iodepth: 8 }],
  });
  return { seconds: (Date.now() - started) / 1000, mibps: json.jobs[0].write.bw_bytes / 1048576 };
}

/**
 * Untimed load on a target before the first measured run: the first requests through a path run
 * cold code (V8 has not optimized our JS yet; TCG has not translated anyone's code yet), which
 * made the first round much slower than the next in early runs.
 */
async function warmUp(t) {
  const started = Date.now();
  const secs = (s) => String(Math.max(1, Math.round(s)));
  await runFio({
    dir: DIR, tag: `warmup-${t.key}`, timeoutMs: (cfg.warmup * 2 + 120) * 1000,
    common: { ...fioCommon(t.device), time_based: true, randrepeat: '0', norandommap: true },
    sections: [
      { name: 'warmup-4k', rw: 'randrw', bs: '4k', iodepth: 32, runtime: secs(cfg.warmup) },
      { name: 'warmup-1m', rw: 'randrw', bs: '1M', iodepth: 8, runtime: secs(cfg.warmup / 2), stonewall: true },
    ],
  });
  return (Date.now() - started) / 1000;
}

async function runJob(t, job, tag) {
  const pids = Object.entries(t.pids);
  const cpu0 = Object.fromEntries(pids.map(([role, pid]) => [role, cpuSeconds(pid)]));
  const g0 = guestCpu();
  const { json } = await runFio({
    dir: DIR, tag, timeoutMs: (cfg.runtime + cfg.ramp + 120) * 1000,
    common: { ...fioCommon(t.device), time_based: true, runtime: String(cfg.runtime), ramp_time: String(cfg.ramp), group_reporting: true, randrepeat: '0', norandommap: true },
    sections: [{ name: job.name, rw: job.rw, bs: job.bs, iodepth: job.iodepth }],
  });
  const g1 = guestCpu();
  const j = json.jobs[0];
  if (j.error) throw new Error(`fio job ${job.name} reported error ${j.error}`);
  const r = parseFioJob(j, job.dir);
  // CPU seconds of the target's processes and of the whole guest (ramp included), for reference.
  r.cpu = Object.fromEntries(pids.map(([role, pid]) => [role, cpuSeconds(pid) != null && cpu0[role] != null ? +(cpuSeconds(pid) - cpu0[role]).toFixed(2) : null]));
  r.guestBusyFraction = +((g1.busy - g0.busy) / (g1.total - g0.total)).toFixed(3);
  return r;
}

async function main() {
  installCleanup();
  const result = {
    guest: {
      kernel: version('uname', ['-r']), cpus: cpus().length, cpuModel: cpus()[0]?.model ?? null, node: process.version,
      fio: version('fio', ['--version']), nbdkit: version('nbdkit', ['--version']), nbdClient: version('nbd-client', ['-V']),
    },
    targets: {}, prefill: {}, runs: [], errors: [],
  };
  const write = () => writeFileSync(join(OUT, RESULT_FILE), JSON.stringify(result, null, 2) + '\n');
  const targets = {};
  let server = null;
  try {
    const needsServer = cfg.targets.some((k) => k === 'ublk' || k === 'wsblk-nbd');
    if (needsServer) {
      log(`starting wsblk serve (memory exports of ${cfg.size})`);
      server = await startServer([`ublk=memory:${cfg.size}`, `nbd=memory:${cfg.size}`]);
      log(`server listening on port ${server.port}`);
    }
    for (const key of cfg.targets) {
      log(`starting ${key}`);
      const t = await startTarget(key, server);
      targets[key] = t;
      if (cfg.scheduler !== 'default') {
        // The same I/O scheduler on every device (the kernel picks mq-deadline for single-queue nbd
        // and none for multi-queue ublk): the comparison is of the paths, not of schedulers.
        try {
          writeFileSync(`/sys/block/${t.device.slice(5)}/queue/scheduler`, cfg.scheduler);
        } catch (e) {
          throw new Error(`cannot set the I/O scheduler of ${t.device} to ${cfg.scheduler}: ${e.message}`);
        }
      }
      result.targets[key] = { ...queueInfo(t.device), setup: t.setup };
      const q = result.targets[key];
      log(`${key}: ${t.device}, ${q.hwQueues} hw queue(s), nr_requests ${q.nrRequests}, max_sectors_kb ${q.maxSectorsKb}, scheduler ${q.scheduler}`);
    }
    for (const key of cfg.targets) {
      const p = await prefill(targets[key]);
      result.prefill[key] = p;
      log(`prefilled ${cfg.region} of ${key} in ${p.seconds.toFixed(1)} s (${p.mibps.toFixed(1)} MiB/s)`);
    }
    if (cfg.warmup > 0) {
      for (const key of cfg.targets) log(`warmed up ${key} (4k then 1M randrw, untimed) in ${(await warmUp(targets[key])).toFixed(1)} s`);
    }
    write();
    const jobs = VM_JOBS.filter((j) => cfg.jobs.includes(j.name));
    const total = cfg.rounds * jobs.length * cfg.targets.length;
    let n = 0;
    for (let round = 0; round < cfg.rounds; round++) {
      const order = cfg.targets.map((_, i) => cfg.targets[(i + round) % cfg.targets.length]);
      for (const job of jobs) {
        for (const key of order) {
          n++;
          const t = targets[key];
          const label = `[${n}/${total}] round ${round + 1} ${job.name} on ${key}`;
          try {
            const r = await runJob(t, job, `${job.name}-${key}-${round}`);
            result.runs.push({ job: job.name, target: key, round, ...r });
            log(`${label}: ${job.metric === 'iops' ? `${Math.round(r.iops)} IOPS` : `${r.mibps.toFixed(1)} MiB/s`}, p50 ${r.clatP50Us.toFixed(0)} us, p99 ${r.clatP99Us.toFixed(0)} us`);
          } catch (e) {
            result.runs.push({ job: job.name, target: key, round, error: e.message });
            log(`${label}: FAILED: ${e.message}`);
            const dead = Object.values(t.procs).find((p) => p.done);
            if (dead) throw new Error(`${dead.name} of target ${key} exited during ${job.name}:\n${tail(dead.output())}`);
          }
          write();
        }
      }
    }
  } catch (e) {
    result.errors.push(e.message);
    log(`FAILED: ${e.message}`);
  }
  result.seconds = (Date.now() - t0) / 1000;
  write();
  log('stopping the targets');
  for (const t of Object.values(targets).reverse()) {
    try { await t.stop(); } catch (e) { log(`stopping ${t.key}: ${e.message}`); }
  }
  if (server) await stopProc(server.proc, 10_000);
  await stopAll(2000);
  return result.errors.length ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (e) => {
  log(`FAILED: ${e.stack || e.message}`);
  stopAll(2000).finally(() => process.exit(1));
});
