#!/usr/bin/env node
// `npm run bench`: the same fio jobs (nbd engine), interleaved, against wsblk (NBD -> ws -> server),
// nbdkit memory (one hop) and nbdkit nbd -> nbdkit memory (two hops); RSS of our processes;
// the goals of issue 4 as ratios from this one run. See bench/README.md.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSecondsOf, installCleanup, stopAll, stopProc } from './lib/procs.mjs';
import { JOBS, opsPerSecond, prefill, runFio, runJob } from './lib/fio.mjs';
import { TARGETS, listDevice, pinning, startTarget, startWsblkDaemon, startWsblkServer, waitInSync } from './lib/targets.mjs';
import { memoryOf, sampleRss } from './lib/rss.mjs';
import { checkGoals, formatReport, medianOf, ratios } from './lib/report.mjs';
import { runProfile } from './lib/profile-run.mjs';
import { UsageError, readOptions, toBytes } from './lib/args.mjs';
import { machineInfo, versionOf } from './lib/machine.mjs';
import { CEPH_TARGETS, missingForCeph, startCeph } from './lib/ceph.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RESULTS = join(ROOT, 'bench', 'results');

const HELP = `Usage: node bench/run.mjs [options]      (npm run bench -- [options] builds first)

Runs the same fio jobs (ioengine=nbd), interleaved, against:
  ours     wsblk serve (memory export) <- ws <- wsblk connect --nbd   (2 hops)
  nbdkit1  nbdkit memory                                             (1 hop)
  nbdkit2  nbdkit nbd -> nbdkit memory                               (2 hops)
  set3     ours over a replica set of 3 wsblk servers (issue 13); after the jobs, the resync
           rate at the default limit (a replica stalled while the region is rewritten)
  base, baseset3   ours and set3 with the wsblk of --baseline DIR (an A/B in one run)
  rbd      ours with an RBD image as the export (rbd:POOL/IMAGE,conf=FILE)    (only with --targets)
  qemurbd  qemu-nbd --cache=writeback on an image of the same size, through qemu's rbd driver
           (Debian qemu-block-extra): one hop to Ceph                        (only with --targets)
           Either starts one Ceph micro cluster (test/ceph/micro-cluster.sh: one monitor, one
           memstore OSD, pool rbd) for the run, or uses --ceph-conf's; one image per target,
           removed (or the cluster stopped) at the end, also on Ctrl-C. The table adds the
           ratio rbd/qemurbd, and the Ceph daemons' CPU per I/O apart from the target's
then measures the RSS of our daemon and server (also at iodepth 128, and with 8 devices on one
server), prints a table with ratios ours/peer, checks the goals of issue 4 (PASS/FAIL) and writes
everything to bench/results/<timestamp>.json.

Options (each also as an environment variable WSBLK_BENCH_<NAME>, e.g. WSBLK_BENCH_RUNTIME=10):
  --runtime S        measured seconds per fio run (default 5)
  --ramp S           warm-up seconds per fio run, not counted (default 1)
  --rounds N         interleaved rounds; the table shows the median per target (default 2)
  --jobs a,b         jobs to run (default all): ${JOBS.map((j) => j.name).join(', ')}
  --targets a,b      targets to run (default: ours, nbdkit1, nbdkit2, set3, and base and baseset3
                     with --baseline; rbd and qemurbd only when named)
  --ceph-conf FILE   rbd, qemurbd: use the running Ceph cluster of FILE (pool rbd) instead of a
                     micro cluster of the bench's own; the bench creates and removes its images
  --baseline DIR     also run targets 'base' and 'baseset3': the wsblk of another built checkout
                     (e.g. a git worktree of an older commit), same topologies as ours and set3;
                     the table adds ours/base and set3/baseset3. The A/B of a lever in one
                     interleaved run
  --quick            --runtime 2 --ramp 1 --rounds 1 (a smoke run)
  --compress ALGO    lz4 | none, passed to our \`wsblk connect\` (default none). fio's buffers are
                     random, so lz4 finds nothing to compress: this measures its cost only
  --size SIZE        disk size of every target (default 1G)
  --region SIZE      the part of the disk the jobs touch, prefilled on every target (default 256M;
                     64M when rbd or qemurbd runs: the micro cluster's OSD holds data in memory)
  --nbdkit2-tcp      nbdkit 2 hops: the hop between the two nbdkits over loopback TCP (as our
                     WebSocket hop is) instead of a Unix socket (default)
  --no-rss           skip the iodepth-128 and the 8-device memory scenarios
  --pin              servers (wsblk serve, nbdkit) on CPU 1, our daemon and fio on CPU 0: as if
                     the servers ran on another host (needs 2 CPUs and taskset)
  --json-only        print only the results JSON on stdout (progress still goes to stderr)
  --profile          instead of the benchmark: run our server and daemon (set3's three servers
                     and daemon with --targets set3) under
                     node --cpu-prof during one job (default randread4k-qd32, or the first of
                     --jobs) and print the top 15 self-time functions of each profile
  --vm               instead: ublk vs kernel nbd inside the qemu VM harness of test/vm/, with
                     options of its own (node bench/run.mjs --vm --help)
  -h, --help         this text

Exit status: 0 when the benchmark ran (even if goals FAIL: it is a measurement), 1 when a run
failed or a tool is missing, 2 on a bad command line.`;

const OPTIONS = {
  runtime: { type: 'string' }, ramp: { type: 'string' }, rounds: { type: 'string' },
  jobs: { type: 'string' }, targets: { type: 'string' }, quick: { type: 'boolean' },
  compress: { type: 'string' }, size: { type: 'string' }, region: { type: 'string' },
  'no-rss': { type: 'boolean' }, pin: { type: 'boolean' }, 'nbdkit2-tcp': { type: 'boolean' }, 'json-only': { type: 'boolean' }, profile: { type: 'boolean' },
  vm: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, baseline: { type: 'string' }, 'ceph-conf': { type: 'string' },
};

function parseOptions(argv) {
  const { values, num, list, size } = readOptions(argv, OPTIONS);
  const quick = !!values.quick;
  const compress = values.compress ?? 'none';
  if (!['lz4', 'none'].includes(compress)) throw new UsageError(`--compress must be lz4 or none, not '${compress}'`);
  const opts = {
    runtime: num('runtime', quick ? 2 : 5, { min: 1 }),
    ramp: num('ramp', 1),
    rounds: num('rounds', quick ? 1 : 2, { min: 1, int: true }),
    jobs: list('jobs', JOBS.map((j) => j.name)),
    targets: list('targets', Object.keys(TARGETS), Object.keys(TARGETS).filter((t) => !CEPH_TARGETS.includes(t) && ((t !== 'base' && t !== 'baseset3') || values.baseline))),
    baseline: values.baseline ?? null,
    cephConf: values['ceph-conf'] ?? null,
    quick, compress,
    size: size('size', '1G'),
    region: null,
    rss: !values['no-rss'],
    pin: !!values.pin,
    nbdkit2Tcp: !!values['nbdkit2-tcp'],
    jsonOnly: !!values['json-only'],
    profile: !!values.profile,
    vm: !!values.vm,
    help: !!values.help,
  };
  for (const t of ['base', 'baseset3']) if (opts.targets.includes(t) && !opts.baseline) throw new UsageError(`target ${t} needs --baseline DIR`);
  opts.ceph = opts.targets.some((t) => CEPH_TARGETS.includes(t));
  // memstore keeps every written byte in the OSD's memory, and writes through Ceph are slow.
  opts.region = size('region', opts.ceph ? '64M' : '256M');
  if (opts.profile && opts.ceph) throw new UsageError('--profile profiles ours or set3, not rbd or qemurbd');
  if (opts.cephConf && !opts.ceph) throw new UsageError(`--ceph-conf is for the targets ${CEPH_TARGETS.join(' and ')}`);
  if (opts.cephConf && !existsSync(opts.cephConf)) throw new UsageError(`--ceph-conf ${opts.cephConf}: no such file`);
  if (toBytes(opts.region) > toBytes(opts.size)) throw new UsageError(`--region ${opts.region} is larger than --size ${opts.size}`);
  return opts;
}

const t0 = Date.now();
const log = (msg) => process.stderr.write(`bench: [${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}\n`);

function checkPrerequisites(opts) {
  const missing = opts.ceph ? missingForCeph({ ownCluster: !opts.cephConf, targets: opts.targets }) : [];
  if (!versionOf('fio', ['--version'])) missing.push('fio (with the nbd engine: Debian package fio)');
  if (!versionOf('nbdkit', ['--version'])) missing.push('nbdkit (Debian packages nbdkit, with the memory and nbd plugins)');
  if (!existsSync(join(ROOT, 'client', 'dist', 'cli', 'main.js'))) missing.push('a build of wsblk (run `npx tsc -b` or `npm run bench`)');
  if (missing.length) throw new Error(`cannot run: missing ${missing.join('; ')}`);
}

/** CPU seconds (user + system) each of the processes `pids` ({role: pid}) used so far (an exited one counts as far as it ran). */
function cpuByRole(pids) {
  return Object.fromEntries(Object.entries(pids).map(([role, pid]) => [role, cpuSecondsOf(pid) ?? 0]));
}

const sum = (byRole) => Object.values(byRole).reduce((a, b) => a + b, 0);

/** The interleaved rounds: for each job, each target in turn (order rotated per round). */
async function measure(opts, dir, targets) {
  const jobs = JOBS.filter((j) => opts.jobs.includes(j.name));
  const results = {};
  for (const job of jobs) results[job.name] = { ...job, runs: Object.fromEntries(opts.targets.map((t) => [t, []])) };
  const total = opts.rounds * jobs.length * opts.targets.length;
  let n = 0;
  for (let round = 0; round < opts.rounds; round++) {
    const order = opts.targets.map((_, i) => opts.targets[(i + round) % opts.targets.length]);
    for (const job of jobs) {
      for (const key of order) {
        n++;
        const t = targets[key];
        const label = `[${n}/${total}] round ${round + 1} ${job.name} on ${key}`;
        try {
          const cpu0 = cpuByRole(t.pids);
          const clusterCpu0 = t.clusterPids ? sum(cpuByRole(t.clusterPids)) : null;
          const r = await runJob({ dir, job, uri: t.uri, runtime: opts.runtime, ramp: opts.ramp, region: opts.region, tag: `${job.name}-${key}-${round}`, cpus: opts.pin ? pinning.clientCpu : undefined });
          // CPU per I/O of the target's processes and fio: steadier than IOPS on a shared, loaded
          // machine, and on a CPU-bound one the ratio of the totals predicts the ratio of IOPS.
          const ops = opsPerSecond(job, r) * (opts.runtime + opts.ramp);
          const cpu1 = cpuByRole(t.pids);
          r.cpuUsPerOp = ops > 0 ? (sum(cpu1) - sum(cpu0)) * 1e6 / ops + (r.fioCpuUsPerOp ?? 0) : null;
          // The same by process (daemon, each server, fio): where a target's CPU goes.
          if (ops > 0) r.cpuUsPerOpByProcess = { ...Object.fromEntries(Object.keys(cpu1).map((k) => [k, (cpu1[k] - cpu0[k]) * 1e6 / ops])), fio: r.fioCpuUsPerOp ?? null };
          if (clusterCpu0 != null && ops > 0) r.cephCpuUsPerOp = (sum(cpuByRole(t.clusterPids)) - clusterCpu0) * 1e6 / ops;
          results[job.name].runs[key].push({ round, ...r });
          log(`${label}: ${job.metric === 'iops' ? `${Math.round(r.iops)} IOPS` : `${r.mibps.toFixed(0)} MiB/s`}, p50 ${r.clatP50Us.toFixed(0)} us, p99 ${r.clatP99Us.toFixed(0)} us, CPU ${r.cpuUsPerOp?.toFixed(1)} us/op${r.cpuUsPerOpByProcess ? ` (${Object.entries(r.cpuUsPerOpByProcess).map(([k, v]) => `${k} ${v?.toFixed(1)}`).join(', ')})` : ''}${r.cephCpuUsPerOp != null ? ` (+ Ceph ${r.cephCpuUsPerOp.toFixed(1)})` : ''}`);
        } catch (e) {
          results[job.name].runs[key].push({ round, error: e.message });
          log(`${label}: FAILED: ${e.message}`);
          const dead = Object.values(t.procs).find((p) => p.done);
          if (dead) throw new Error(`${dead.name} of target ${key} exited during ${job.name}:\n${dead.output().trim().split('\n').slice(-8).join('\n')}`);
        }
      }
    }
  }
  for (const j of Object.values(results)) {
    j.median = Object.fromEntries(Object.entries(j.runs).map(([k, runs]) => [k, medianOf(runs)]));
    j.ratios = ratios(j, j.median);
  }
  return results;
}

/**
 * The resync rate at the default limit: one replica of set3 stalls (SIGSTOP) and is ejected
 * while the region is written again; it returns (SIGCONT) and copies what it missed (its dirty
 * map). Rate: bytes copied / time from its resync's start to its end, from the daemon's log.
 */
async function resyncRate(opts, dir, set3) {
  const server = set3.procs.server2;
  const daemon = set3.procs.daemon;
  const from = daemon.stderr().length;
  process.kill(server.pid, 'SIGSTOP');
  try {
    log(`resync: replica 3 stalled; writing ${opts.region} while it is ejected`);
    await prefill({ dir, uri: set3.uri, region: opts.region, tag: 'resync-write' });
    const d = await listDevice(set3.runDir);
    if (d.replicas[2]?.state === 'in-sync') throw new Error('the stalled replica was not ejected');
  } finally {
    process.kill(server.pid, 'SIGCONT');
  }
  const t0 = Date.now();
  await waitInSync(set3.runDir, 300_000);
  const seconds = (Date.now() - t0) / 1000;
  const logText = daemon.stderr().slice(from);
  const start = /^(\S+) info\s+replica: resync of \S+ starts/m.exec(logText);
  const done = /^(\S+) info\s+replica: resync of \S+ done: (\d+) bytes copied/m.exec(logText);
  if (!start || !done) throw new Error(`no resync in the daemon's log: ${logText.slice(-500)}`);
  const copySeconds = (Date.parse(done[1]) - Date.parse(start[1])) / 1000;
  const bytes = Number(done[2]);
  const r = { mib: bytes / 1048576, seconds: copySeconds, untilInSyncSeconds: seconds, mibps: bytes / 1048576 / copySeconds, limitMiBps: 100 };
  log(`resync: ${r.mib.toFixed(0)} MiB copied in ${copySeconds.toFixed(1)} s (${r.mibps.toFixed(0)} MiB/s; in sync ${seconds.toFixed(1)} s after it returned)`);
  return r;
}

/** iodepth 128 on our device (4k, then 1M, randrw): peak RSS of the daemon and the server. */
async function depth128(opts, dir, ours) {
  const pids = [ours.pids.daemon, ours.pids.server];
  const errors = [];
  const phases = {};
  for (const bs of ['4k', '1M']) {
    log(`depth 128: ${bs} randrw on ours for ${opts.runtime} s`);
    const sampler = sampleRss(pids);
    try {
      await runFio({
        dir, tag: `depth128-${bs}`, timeoutMs: (opts.runtime + 60) * 1000,
        common: { ioengine: 'nbd', size: opts.region, time_based: true, runtime: String(opts.runtime), norandommap: true },
        sections: [{ name: `randrw${bs}-qd128`, uri: ours.uri, rw: 'randrw', bs, iodepth: 128 }],
      });
    } catch (e) {
      errors.push(`${bs}: ${e.message}`);
      log(`depth 128 ${bs} FAILED: ${e.message}`);
    }
    const peak = sampler.stop();
    phases[bs] = { daemonPeakRssMiB: peak[ours.pids.daemon], serverPeakRssMiB: peak[ours.pids.server] };
  }
  const phaseList = Object.values(phases);
  return {
    load: '4k then 1M randrw, iodepth 128, one fio job each',
    daemonPeakRssMiB: Math.max(...phaseList.map((p) => p.daemonPeakRssMiB)),
    serverPeakRssMiB: Math.max(...phaseList.map((p) => p.serverPeakRssMiB)),
    phases,
    daemonHwmMiB: memoryOf(ours.pids.daemon)?.hwmMiB ?? null, serverHwmMiB: memoryOf(ours.pids.server)?.hwmMiB ?? null,
    errors,
  };
}

/** One server, 8 memory exports, 8 daemons, light load on all: server and daemon RSS. */
async function eightDevices(opts, dir) {
  const devices = 8;
  const perDevice = '8M';
  const sub = join(dir, 'eight');
  mkdirSync(join(sub, 'run'), { recursive: true });
  log(`8 devices: starting a server with ${devices} memory exports and ${devices} daemons`);
  const server = await startWsblkServer({ dir: sub, exports: Array.from({ length: devices }, (_, i) => `d${i}=memory:${opts.size}`), name: 'wsblk-serve-8' });
  const daemons = [];
  try {
    daemons.push(...await Promise.all(Array.from({ length: devices }, (_, i) => startWsblkDaemon({
      dir: sub, url: `ws://127.0.0.1:${server.port}/d${i}`, sock: join(sub, `d${i}.sock`), compress: opts.compress, name: `wsblk-daemon-d${i}`,
    }))));
    const pids = [server.proc.pid, ...daemons.map((d) => d.proc.pid)];
    const idle = memoryOf(server.proc.pid);
    const sampler = sampleRss(pids);
    const load = `4k randrw iodepth 4 on each of ${devices} devices over ${perDevice} each, ${opts.runtime} s`;
    log(`8 devices: ${load}`);
    let error = null;
    let perDeviceIops = null;
    try {
      const { json } = await runFio({
        dir: sub, tag: 'eight', timeoutMs: (opts.runtime + 60) * 1000,
        common: { ioengine: 'nbd', size: perDevice, time_based: true, runtime: String(opts.runtime), rw: 'randrw', bs: '4k', iodepth: 4 },
        sections: daemons.map((d, i) => ({ name: `d${i}`, uri: d.uri })),
      });
      perDeviceIops = json.jobs.map((j) => Math.round(j.read.iops + j.write.iops));
    } catch (e) {
      error = e.message;
      log(`8 devices: fio FAILED: ${e.message}`);
    }
    const peak = sampler.stop();
    const dPeaks = daemons.map((d) => peak[d.proc.pid]);
    return {
      devices, load, perDeviceIops,
      serverIdleRssMiB: idle?.rssMiB ?? null,
      serverPeakRssMiB: peak[server.proc.pid], serverHwmMiB: memoryOf(server.proc.pid)?.hwmMiB ?? null,
      serverDataMiB: devices * (toBytes(perDevice) / 1048576),
      daemonPeakRssMiB: dPeaks, daemonPeakRssMiBMax: Math.max(...dPeaks), daemonPeakRssMiBSum: dPeaks.reduce((a, b) => a + b, 0),
      error,
    };
  } finally {
    for (const d of daemons) await stopProc(d.proc);
    await stopProc(server.proc);
  }
}

async function benchmark(opts, dir) {
  const started = new Date();
  const results = {
    kind: 'wsblk-bench', startedAt: started.toISOString(), machine: machineInfo({ fio: ['fio', ['--version']], nbdkit: ['nbdkit', ['--version']] }),
    options: { runtime: opts.runtime, ramp: opts.ramp, rounds: opts.rounds, jobs: opts.jobs, targets: opts.targets, compress: opts.compress, size: opts.size, region: opts.region, rss: opts.rss, nbdkit2Hop: opts.nbdkit2Tcp ? 'tcp' : 'unix', baseline: opts.baseline, pin: opts.pin, cephConf: opts.cephConf },
    nbdkitThreads: 'nbdkit default (16)',
  };
  // Stopped (or its images removed) below, or by its exit hook on Ctrl-C and errors.
  const ceph = opts.ceph ? await startCeph({ conf: opts.cephConf, targets: opts.targets.filter((t) => CEPH_TARGETS.includes(t)), size: opts.size, log }) : null;
  if (ceph) {
    results.ceph = { cluster: ceph.own ? 'micro cluster of the bench (test/ceph/micro-cluster.sh: 1 mon, 1 memstore OSD, auth off)' : opts.cephConf, startSeconds: ceph.startSeconds, pool: ceph.pool, images: ceph.images, ceph: versionOf('ceph', ['--version']), qemuNbd: versionOf('qemu-nbd', ['--version']) };
  }
  const targets = {};
  for (const key of opts.targets) {
    log(`starting ${key}: ${TARGETS[key]}`);
    targets[key] = await startTarget(key, { dir, size: opts.size, compress: opts.compress, nbdkit2Tcp: opts.nbdkit2Tcp, baseline: opts.baseline, ceph });
    // The monitor's and OSD's CPU, shared by both Ceph targets, counted apart from the target's.
    if (CEPH_TARGETS.includes(key)) targets[key].clusterPids = ceph.pids;
  }
  results.prefill = {};
  for (const key of opts.targets) {
    const p = await prefill({ dir, uri: targets[key].uri, region: opts.region, tag: `prefill-${key}` });
    results.prefill[key] = p;
    log(`prefilled ${opts.region} of ${key} in ${p.seconds.toFixed(1)} s (${p.mibps.toFixed(0)} MiB/s)`);
  }
  results.jobs = await measure(opts, dir, targets);
  if (targets.set3) results.resync = await resyncRate(opts, dir, targets.set3).catch((e) => ({ error: e.message }));

  results.rss = {};
  const ours = targets.ours;
  if (ours) {
    const mem = (pid) => memoryOf(pid);
    results.rss.afterRuns = {
      daemon: mem(ours.pids.daemon), server: mem(ours.pids.server), serverDataMiB: toBytes(opts.region) / 1048576,
      nbdkit1: targets.nbdkit1 ? mem(targets.nbdkit1.pids.memory) : null,
      nbdkit2forwarder: targets.nbdkit2 ? mem(targets.nbdkit2.pids.forwarder) : null,
      nbdkit2memory: targets.nbdkit2 ? mem(targets.nbdkit2.pids.memory) : null,
    };
    if (opts.rss) results.rss.depth128 = await depth128(opts, dir, ours);
  }
  for (const t of Object.values(targets)) await t.stop();
  ceph?.stop();
  if (opts.rss) results.rss.eightDevices = await eightDevices(opts, dir);
  else results.rss.skipped = 'depth-128 and 8-device scenarios skipped (--no-rss)';

  results.goals = checkGoals(results);
  results.finishedAt = new Date().toISOString();
  results.machine.loadavgAtEnd = loadavg();
  results.seconds = Math.round((Date.now() - started.getTime()) / 1000);
  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, `${started.toISOString().replace(/:/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  const failed = Object.values(results.jobs).some((j) => Object.values(j.runs).some((runs) => runs.some((r) => r.error)));
  if (opts.jsonOnly) {
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  } else {
    const m = results.machine;
    process.stdout.write(`\nwsblk bench ${results.startedAt} on ${m.cores} cores (${m.cpuModel}, load average ${m.loadavgAtStart[0].toFixed(1)} at start, ${m.loadavgAtEnd[0].toFixed(1)} at end), node ${m.node}, ${m.fio}, ${m.nbdkit}, git ${m.gitHead?.slice(0, 10)}${m.gitDirty ? ' (dirty tree)' : ''}\n`);
    process.stdout.write(formatReport(results) + '\n');
    process.stdout.write(`\nFull results: ${file} (${results.seconds} s)\n`);
  }
  log(`results written to ${file}`);
  return failed ? 1 : 0;
}

async function main() {
  // --vm (bench/vm.mjs) has options of its own: the whole command line goes there.
  const vmEnv = process.env.WSBLK_BENCH_VM;
  if (process.argv.slice(2).includes('--vm') || (vmEnv && !/^(0|false|no)$/i.test(vmEnv))) {
    const { runVmBench } = await import('./vm.mjs');
    return runVmBench(process.argv.slice(2));
  }
  let opts;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`bench: ${e.message}\n(see node bench/run.mjs --help)\n`);
    return 2;
  }
  if (opts.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  checkPrerequisites(opts);
  if (opts.pin) {
    if (!versionOf('taskset', ['--version'])) throw new Error('--pin needs taskset (Debian package util-linux)');
    if (availableParallelism() < 2) throw new Error('--pin needs 2 CPUs');
    pinning.on = true;
  }
  installCleanup();
  const dir = mkdtempSync(join(tmpdir(), 'wsblk-bench-'));
  // Also on Ctrl-C, which exits without running the finally below (children are killed first).
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'run'));
  try {
    if (opts.profile) return await runProfile(opts, dir, { resultsDir: RESULTS, log });
    return await benchmark(opts, dir);
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then((code) => { process.exitCode = code; }, (e) => {
  process.stderr.write(`bench: ${e.message}\n`);
  stopAll(2000).finally(() => process.exit(1));
});
