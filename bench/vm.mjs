// `node bench/run.mjs --vm`: our ublk path against kernel nbd, inside one run of test/vm's qemu
// (TCG) guest. This is the host half: it checks the tools, writes the config into a scratch dir,
// boots the guest with test/vm/run.sh running bench/vm-guest.mjs, then turns the guest's runs
// into medians, ratios (every target / kernel nbd), a table, the issue-4 VM goal and
// bench/results/<timestamp>-vm.json. See "VM mode" in bench/README.md.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmtNum, fmtRatio, fmtUs, medianOf, table } from './lib/report.mjs';
import { machineInfo, versionOf } from './lib/machine.mjs';
import { UsageError, readOptions, toBytes } from './lib/args.mjs';
import { BASELINES, CONFIG_FILE, DEFAULT_TARGETS, RESULT_FILE, VM_JOBS, VM_TARGETS } from './vm-common.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RESULTS = join(ROOT, 'bench', 'results');
const GUEST = join(ROOT, 'bench', 'vm-guest.mjs');
const RUN_SH = join(ROOT, 'test', 'vm', 'run.sh');

const VM_HELP = `Usage: node bench/run.mjs --vm [options]

Boots test/vm's qemu (TCG) guest once and, inside it, runs the same fio jobs (direct I/O on the
block device, io_uring) interleaved on:
  ublk       ${VM_TARGETS.ublk}
  nbd-tcp    ${VM_TARGETS['nbd-tcp']}
  nbd        ${VM_TARGETS.nbd}
  wsblk-nbd  ${VM_TARGETS['wsblk-nbd']}
             (not run by default; add it with --targets ublk,nbd-tcp,nbd,wsblk-nbd)
and prints each target's figures as a ratio to each kernel nbd peer (TCG timings mean nothing
alone): nbd-tcp crosses loopback TCP as our ws does; nbd uses a Unix socket, a one-host setup
that costs the guest much less per request. It prints the issue-4 goal "in the VM, ublk path
>= 1.0x kernel nbd at 4k QD32" as PASS/FAIL against each, and writes everything to
bench/results/<timestamp>-vm.json. About 6 minutes with the defaults.
Needs qemu-system-x86, fio, nbdkit, nbd-client (Debian packages) and a build of wsblk.

Options (each also as an environment variable WSBLK_BENCH_<NAME>, e.g. WSBLK_BENCH_RUNTIME=5):
  --runtime S          measured seconds per fio run (default 3)
  --ramp S             warm-up seconds per fio run, not counted (default 1)
  --rounds N           interleaved rounds; the table shows the median per target (default 3)
  --warmup S           before the first round, S s of 4k randrw QD32 then S/2 s of 1M randrw on
                       every target, not counted (default 6; 0: none)
  --jobs a,b           jobs to run (default all but seqwrite1m-qd8):
                       ${VM_JOBS.map((j) => j.name).join(', ')}
  --targets a,b        targets (default ${DEFAULT_TARGETS.join(',')}; at least one of the peers
                       ${BASELINES.join(', ')} is always run: when none is named, both are)
  --quick              --runtime 2 --ramp 1 --rounds 1 --warmup 2 (a smoke run)
  --size SIZE          disk size of every target (default 1G)
  --region SIZE        the part the jobs touch, prefilled on every target (default 32M: TCG
                       writes our path at a few MiB/s)
  --ioengine E         io_uring | libaio (default io_uring)
  --block-size B       logical block size of every device, 512 | 4096 (default 512)
  --nbd-connections N  nbd-client -C N: sockets (and hardware queues) of the kernel nbd
                       devices (default 1, nbd-client's default)
  --queues N           ublk: wsblk connect --queues (default: wsblk's, min(cores, 4) = 2 here)
  --depth N            ublk: wsblk connect --depth (default: wsblk's, 128)
  --compress ALGO      lz4 | none, for our wsblk connect (default none)
  --scheduler S        I/O scheduler set on every device: none, mq-deadline, ..., or default
                       (leave the kernel's choice: mq-deadline for nbd, none for ublk)
                       (default none)
  --vm-timeout S       kill the guest after this long, boot included (default 1200)
  --keep               keep the VM's scratch dir (config, guest results, guest logs in .vm/)
  --json-only          print only the results JSON on stdout
  -h, --help           this text

Exit status: 0 when it measured (even if the goal FAILs), 1 when the VM, a target or a fio run
failed, 2 on a bad command line.`;

const OPTIONS = {
  vm: { type: 'boolean' },
  runtime: { type: 'string' }, ramp: { type: 'string' }, rounds: { type: 'string' }, warmup: { type: 'string' },
  jobs: { type: 'string' }, targets: { type: 'string' }, quick: { type: 'boolean' },
  size: { type: 'string' }, region: { type: 'string' }, ioengine: { type: 'string' },
  'block-size': { type: 'string' }, 'nbd-connections': { type: 'string' }, queues: { type: 'string' },
  depth: { type: 'string' }, compress: { type: 'string' }, scheduler: { type: 'string' }, 'vm-timeout': { type: 'string' },
  keep: { type: 'boolean' }, 'json-only': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
};

export { UsageError as VmUsageError };


function parseVmOptions(argv) {
  const { values, num, list, size, choice } = readOptions(argv, OPTIONS);
  const quick = !!values.quick;
  let targets = list('targets', Object.keys(VM_TARGETS), DEFAULT_TARGETS);
  if (!targets.some((t) => BASELINES.includes(t))) targets = Object.keys(VM_TARGETS).filter((k) => BASELINES.includes(k) || targets.includes(k));
  const opts = {
    runtime: num('runtime', quick ? 2 : 3, { min: 1 }),
    ramp: num('ramp', 1),
    rounds: num('rounds', quick ? 1 : 3, { min: 1, int: true }),
    warmup: num('warmup', quick ? 2 : 6),
    jobs: list('jobs', VM_JOBS.map((j) => j.name), VM_JOBS.filter((j) => !j.optional).map((j) => j.name)),
    targets, quick,
    size: size('size', '1G'),
    region: size('region', '32M'),
    ioengine: choice('ioengine', 'io_uring', ['io_uring', 'libaio']),
    blockSize: Number(choice('block-size', '512', ['512', '4096'])),
    nbdConnections: num('nbd-connections', 1, { min: 1, int: true }),
    queues: values.queues === undefined ? null : num('queues', null, { min: 1, int: true }),
    depth: values.depth === undefined ? null : num('depth', null, { min: 1, int: true }),
    compress: choice('compress', 'none', ['none', 'lz4']),
    scheduler: values.scheduler ?? 'none',
    vmTimeout: num('vm-timeout', 1200, { min: 60, int: true }),
    keep: !!values.keep,
    jsonOnly: !!values['json-only'],
    help: !!values.help,
  };
  if (!/^[a-z0-9_-]+$/.test(opts.scheduler)) throw new UsageError(`--scheduler '${opts.scheduler}' is not a scheduler name`);
  if (toBytes(opts.region) > toBytes(opts.size)) throw new UsageError(`--region ${opts.region} is larger than --size ${opts.size}`);
  return opts;
}

const t0 = Date.now();
const log = (msg) => process.stderr.write(`bench --vm: [${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}\n`);

/** A command on PATH or in the sbin dirs (the guest's PATH has them; a user's may not). */
function which(cmd) {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  return dirs.map((d) => join(d, cmd)).find((p) => existsSync(p)) ?? null;
}

function checkPrerequisites() {
  const missing = [];
  if (!which('qemu-system-x86_64')) missing.push('qemu-system-x86_64 (Debian package qemu-system-x86; see test/vm/README.md)');
  if (!which('fio')) missing.push('fio (Debian package fio)');
  if (!which('nbdkit')) missing.push('nbdkit (Debian package nbdkit)');
  if (!which('nbd-client')) missing.push('nbd-client (Debian package nbd-client)');
  if (!existsSync(join(ROOT, 'client', 'dist', 'cli', 'main.js'))) missing.push('a build of wsblk (run `npx tsc -b`)');
  if (!existsSync(RUN_SH)) missing.push(`the VM harness (${RUN_SH})`);
  if (missing.length) throw new Error(`cannot run: missing ${missing.join('; ')}`);
}

/** Boots the guest with vm-guest.mjs; streams its output to our stderr; resolves run.sh's exit status. */
function runGuest(opts, scratch) {
  const args = [RUN_SH, '--timeout', String(opts.vmTimeout), '--scratch', scratch, '--', process.execPath, GUEST];
  const child = spawn('bash', args, { cwd: ROOT, stdio: ['ignore', 2, 2] });
  const onSignal = (sig) => {
    process.stderr.write(`\nbench --vm: ${sig}: stopping the VM\n`);
    try { child.kill('SIGTERM'); } catch { /* gone */ }
  };
  const sigs = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of sigs) process.on(s, onSignal);
  return new Promise((resolve) => {
    child.once('error', (e) => resolve({ code: null, error: e }));
    child.once('exit', (code, signal) => {
      for (const s of sigs) process.off(s, onSignal);
      resolve({ code, signal });
    });
  });
}

const ratio = (a, b) => (a == null || b == null || b === 0 ? null : a / b);

/** The pairs "target/peer" a run reports: every target that is not a peer against every peer run. */
function ratioPairs(targets) {
  const peers = BASELINES.filter((b) => targets.includes(b));
  return targets.filter((t) => !BASELINES.includes(t)).flatMap((t) => peers.map((b) => ({ key: `${t}/${b}`, target: t, peer: b })));
}

/** Per job: runs per target, medians, ratios target/peer. */
function summarize(opts, guestResult) {
  const jobs = {};
  for (const job of VM_JOBS.filter((j) => opts.jobs.includes(j.name))) {
    const { optional, ...spec } = job; // eslint-disable-line no-unused-vars
    const runs = Object.fromEntries(opts.targets.map((t) => [t, guestResult.runs.filter((r) => r.job === job.name && r.target === t).map(({ job: _j, target: _t, ...r }) => r)]));
    const median = Object.fromEntries(Object.entries(runs).map(([t, rs]) => [t, medianOf(rs)]));
    const ratios = {};
    const roundRatios = {};
    for (const { key: pair, target: t, peer } of ratioPairs(opts.targets)) {
      const o = median[t];
      const b = median[peer];
      ratios[pair] = { iops: ratio(o?.iops, b?.iops), mibps: ratio(o?.mibps, b?.mibps), clatP50: ratio(o?.clatP50Us, b?.clatP50Us), clatP99: ratio(o?.clatP99Us, b?.clatP99Us) };
      // The same ratio within each round (the two runs were minutes apart at most): shows how
      // much the shared host's load moved the figures.
      const key = job.metric;
      roundRatios[pair] = Array.from({ length: opts.rounds }, (_, round) => {
        const x = runs[t].find((r) => r.round === round && !r.error);
        const y = runs[peer].find((r) => r.round === round && !r.error);
        return ratio(x?.[key], y?.[key]);
      });
    }
    jobs[job.name] = { ...spec, runs, median, ratios, roundRatios };
  }
  return jobs;
}

function checkVmGoals(jobs) {
  const goals = [];
  const how = { 'nbd-tcp': 'over loopback TCP, as ours', nbd: 'over a Unix socket' };
  for (const peer of BASELINES) {
    for (const name of ['randread4k-qd32', 'randwrite4k-qd32']) {
      const pair = `ublk/${peer}`;
      if (!jobs[name]?.ratios?.[pair]) continue;
      const measured = jobs[name].ratios[pair].iops ?? null;
      goals.push({
        goal: `in the VM: ublk path vs kernel nbd ${how[peer]} (${peer}) at 4k QD32 (${name.startsWith('randread') ? 'randread' : 'randwrite'} IOPS)`,
        peer, measured, limit: '>= 1.0x', pass: measured == null ? null : measured >= 1.0,
        roundRatios: jobs[name].roundRatios[pair] ?? [],
        note: 'ratio of the medians; qemu TCG guest, nbdkit memory behind kernel nbd',
      });
    }
  }
  return goals;
}

function formatVmReport(results) {
  const o = results.options;
  const targets = o.targets;
  const pairs = ratioPairs(targets).map((p) => p.key);
  const out = [];
  out.push(`Median of ${o.rounds} interleaved round(s), ${o.runtime} s each (+${o.ramp} s ramp; ${o.warmup} s untimed warm-up first), fio ioengine=${o.ioengine} direct=1 on the block device, `
    + `region ${o.region} of a ${o.size} disk, logical block ${o.blockSize}, scheduler ${o.scheduler}; nbd-client -C ${o.nbdConnections}.`);
  out.push(`In a qemu TCG guest (${results.guest?.cpus ?? '?'} vCPUs, kernel ${results.guest?.kernel ?? '?'}): the absolute figures are TCG's and mean little; read the ratios.`);
  out.push('Throughput ratio target/peer: higher is better for the target. Latency ratio: LOWER is better for the target.');
  const rows = [];
  for (const [name, j] of Object.entries(results.jobs)) {
    const m = j.median;
    const [label, key, digits] = j.metric === 'iops' ? ['IOPS', 'iops', 0] : ['MiB/s', 'mibps', 1];
    rows.push([name, label, ...targets.map((t) => fmtNum(m[t]?.[key], digits)), ...pairs.map((p) => fmtRatio(j.ratios[p][key]))]);
    rows.push(['', 'p50 clat', ...targets.map((t) => fmtUs(m[t]?.clatP50Us)), ...pairs.map((p) => fmtRatio(j.ratios[p].clatP50))]);
    rows.push(['', 'p99 clat', ...targets.map((t) => fmtUs(m[t]?.clatP99Us)), ...pairs.map((p) => fmtRatio(j.ratios[p].clatP99))]);
  }
  out.push(table(rows, ['job', 'metric', ...targets, ...pairs]));
  const failed = Object.entries(results.jobs).flatMap(([name, j]) => Object.entries(j.runs).flatMap(([t, runs]) => runs.filter((x) => x.error).map((x) => `${name} on ${t}: ${x.error}`)));
  if (failed.length) out.push('', 'Failed runs:', ...failed.map((f) => `  ${f}`));
  if (results.errors?.length) out.push('', 'Errors:', ...results.errors.map((e) => `  ${e.split('\n').join('\n    ')}`));
  const dev = Object.entries(results.targets ?? {}).map(([t, d]) => `${t} ${d.device} (${d.hwQueues} hw queue(s), nr_requests ${d.nrRequests}, max ${d.maxSectorsKb} KiB, scheduler ${d.scheduler})`);
  if (dev.length) out.push('', `Devices: ${dev.join('; ')}`);
  const pf = Object.entries(results.prefill ?? {}).map(([t, p]) => `${t} ${p.mibps.toFixed(1)} MiB/s`);
  if (pf.length) out.push(`Prefill (1M writes, QD8): ${pf.join(', ')}`);
  out.push('', 'Goal of issue 4 (VM):');
  if (results.goals.length === 0) out.push('  not judged: the goal needs the ublk target and a peer (nbd-tcp or nbd) in the same run');
  for (const g of results.goals) {
    const verdict = g.pass === null ? 'N/A ' : g.pass ? 'PASS' : 'FAIL';
    const perRound = g.roundRatios?.length > 1 ? `; round by round ${g.roundRatios.map(fmtRatio).join(', ')}` : '';
    out.push(`  ${verdict}  ${g.goal}: ${g.measured == null ? 'not measured' : `${g.measured.toFixed(2)}x`} (goal ${g.limit})${perRound}`);
  }
  return out.join('\n');
}

/** The whole VM mode; `argv` as given to bench/run.mjs. Resolves the exit status. */
export async function runVmBench(argv) {
  let opts;
  try {
    opts = parseVmOptions(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`bench --vm: ${e.message}\n(see node bench/run.mjs --vm --help)\n`);
    return 2;
  }
  if (opts.help) {
    process.stdout.write(VM_HELP + '\n');
    return 0;
  }
  try {
    checkPrerequisites();
  } catch (e) {
    process.stderr.write(`bench --vm: ${e.message}\n`);
    return 1;
  }
  const started = new Date();
  const nRuns = opts.rounds * opts.jobs.length * opts.targets.length;
  log(`${nRuns} fio runs of ${opts.runtime}+${opts.ramp} s on ${opts.targets.join(', ')} in one VM boot`);
  const scratch = mkdtempSync(join(tmpdir(), 'wsblk-bench-vm-'));
  const config = {
    targets: opts.targets, jobs: opts.jobs, rounds: opts.rounds, runtime: opts.runtime, ramp: opts.ramp, warmup: opts.warmup,
    size: opts.size, region: opts.region, ioengine: opts.ioengine, blockSize: opts.blockSize,
    nbdConnections: opts.nbdConnections, queues: opts.queues, depth: opts.depth, compress: opts.compress,
    scheduler: opts.scheduler,
  };
  writeFileSync(join(scratch, CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
  const vmRun = await runGuest(opts, scratch);
  let guest = null;
  try {
    guest = JSON.parse(readFileSync(join(scratch, RESULT_FILE), 'utf8'));
  } catch { /* the guest never got that far */ }
  let times = null;
  try {
    const t = readFileSync(join(scratch, '.vm', 'times'), 'utf8');
    times = Object.fromEntries([...t.matchAll(/(\w+)=(\S+)/g)].map(([, k, v]) => [k, Number.isFinite(Number(v)) ? Number(v) : v]));
  } catch { /* none */ }

  const errors = [...(guest?.errors ?? [])];
  if (vmRun.code !== 0) {
    const why = { 124: `: the guest timed out (--vm-timeout ${opts.vmTimeout})`, 125: ': the VM harness failed (see its messages above)' }[vmRun.code] ?? '';
    errors.push(`test/vm/run.sh exited ${vmRun.code ?? vmRun.signal ?? vmRun.error?.message}${why}`);
  }
  if (!guest) errors.push('the guest wrote no results');
  const results = {
    kind: 'wsblk-bench-vm', startedAt: started.toISOString(), machine: machineInfo({ qemu: ['qemu-system-x86_64', ['--version']] }), guest: guest?.guest ?? null,
    options: { ...config, vmTimeout: opts.vmTimeout },
    targetsDescribed: Object.fromEntries(opts.targets.map((t) => [t, VM_TARGETS[t]])),
    targets: guest?.targets ?? {}, prefill: guest?.prefill ?? {},
    jobs: summarize(opts, guest ?? { runs: [] }),
    vm: { exitCode: vmRun.code, bootSeconds: times?.boot ?? null, commandSeconds: times?.command ?? null, totalSeconds: times?.total ?? null },
    errors,
  };
  results.goals = checkVmGoals(results.jobs);
  results.finishedAt = new Date().toISOString();
  results.machine.loadavgAtEnd = loadavg();
  results.seconds = Math.round((Date.now() - started.getTime()) / 1000);
  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, `${started.toISOString().replace(/:/g, '-')}-vm.json`);
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  const runFailed = Object.values(results.jobs).some((j) => Object.values(j.runs).some((runs) => runs.some((r) => r.error)));
  const failed = errors.length > 0 || runFailed;
  if (opts.keep || failed) {
    log(`scratch dir kept: ${scratch} (fio output is in the guest's /tmp, gone; guest logs in .vm/)`);
  } else {
    rmSync(scratch, { recursive: true, force: true });
  }
  if (opts.jsonOnly) {
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  } else {
    const m = results.machine;
    const g = results.guest;
    process.stdout.write(`\nwsblk bench --vm ${results.startedAt} on ${m.cores} cores (${m.cpuModel}, load average ${m.loadavgAtStart[0].toFixed(1)} at start, ${m.loadavgAtEnd[0].toFixed(1)} at end), `
      + `guest: ${g ? `${g.node}, ${g.fio}, ${g.nbdkit}, nbd-client ${g.nbdClient?.replace(/^.*from nbd /, '') ?? '?'}` : 'no results'}, git ${m.gitHead?.slice(0, 10)}${m.gitDirty ? ' (dirty tree)' : ''}\n`);
    process.stdout.write(formatVmReport(results) + '\n');
    process.stdout.write(`\nFull results: ${file} (${results.seconds} s; guest boot ${results.vm.bootSeconds ?? '?'} s, command ${results.vm.commandSeconds ?? '?'} s)\n`);
  }
  log(`results written to ${file}`);
  return failed ? 1 : 0;
}
