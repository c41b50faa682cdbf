// --profile: our server and daemon under `node --cpu-prof` during one job; top self-time functions.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { JOBS, prefill, runJob } from './fio.mjs';
import { stopProc } from './procs.mjs';
import { summarizeProfile } from './profile.mjs';
import { startTarget } from './targets.mjs';

const TOP = 15;

function formatTop(role, s) {
  const lines = [`${role}: ${s.samples} samples over ${(s.totalMs / 1000).toFixed(1)} s, busy (not idle) ${s.busyPct}%   ${s.file}`];
  lines.push('  self ms  %busy  function                                 where');
  for (const f of s.functions.filter((x) => x.function !== '(idle)').slice(0, TOP)) {
    lines.push(`  ${String(f.ms.toFixed(0)).padStart(7)}  ${f.pctBusy.toFixed(1).padStart(5)}  ${f.function.slice(0, 40).padEnd(40)} ${f.where}`);
  }
  for (const [fn, chains] of Object.entries(s.callers)) {
    lines.push(`  called from (${fn}):`);
    for (const c of chains) lines.push(`    ${c.pctOfFunction.toFixed(0).padStart(3)}%  ${c.chain}`);
  }
  lines.push('  by area (self time, % of busy):');
  lines.push('    ' + s.areas.filter((a) => a.area !== '(idle)').map((a) => `${a.area} ${a.pctBusy}%`).join(', '));
  return lines.join('\n');
}

export async function runProfile(opts, dir, { resultsDir, log }) {
  const job = JOBS.find((j) => j.name === (opts.jobs.length < JOBS.length ? opts.jobs[0] : 'randread4k-qd32'));
  const stamp = new Date().toISOString().replace(/:/g, '-');
  const profDir = join(resultsDir, 'profiles', stamp);
  mkdirSync(profDir, { recursive: true });
  // A smaller prefill than the benchmark's: the profile covers the whole life of each process,
  // and the prefill (1M writes) should stay a small part of it.
  const region = '64M';
  // The target profiled: ours, or set3 when --targets names it alone (its three servers and daemon).
  const key = opts.targets.length === 1 && opts.targets[0] === 'set3' ? 'set3' : 'ours';
  log(`profile: starting ${key}'s servers and daemon under node --cpu-prof (${profDir})`);
  const ours = await startTarget(key, { dir, size: opts.size, compress: opts.compress, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
  let result;
  try {
    await prefill({ dir, uri: ours.uri, region, tag: 'profile-prefill' });
    log(`profile: ${job.name} for ${opts.runtime} s (+${opts.ramp} s ramp) over ${region}`);
    result = await runJob({ dir, job, uri: ours.uri, runtime: opts.runtime, ramp: opts.ramp, region, tag: 'profile' });
  } finally {
    // A clean exit (SIGTERM is handled by both) is what makes node write the profile.
    for (const [role, proc] of Object.entries(ours.procs)) if (role === 'daemon') await stopProc(proc, 15_000);
    for (const [role, proc] of Object.entries(ours.procs)) if (role !== 'daemon') await stopProc(proc, 15_000);
  }
  const roleOf = Object.fromEntries(Object.entries(ours.pids).map(([role, pid]) => [pid, role === 'daemon' ? 'daemon (client)' : role]));
  const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
  const summaries = {};
  for (const f of files) {
    const pid = /\.(\d+)\.\d+\.\d+\.cpuprofile$/.exec(f)?.[1];
    const role = roleOf[pid] ?? `pid ${pid}`;
    summaries[role] = summarizeProfile(join(profDir, f));
  }
  if (Object.keys(summaries).length < Object.keys(ours.pids).length) throw new Error(`expected ${Object.keys(ours.pids).length} profiles in ${profDir}, found ${files.length}`);
  const text = [
    `Profile of ${job.name}: ${Math.round(result.iops)} IOPS, ${result.mibps.toFixed(0)} MiB/s, p50 ${result.clatP50Us.toFixed(0)} us, p99 ${result.clatP99Us.toFixed(0)} us (under the profiler)`,
    ...Object.entries(summaries).map(([role, s]) => formatTop(role, s)),
  ].join('\n\n');
  const out = join(resultsDir, `profile-${stamp}.json`);
  writeFileSync(out, JSON.stringify({ kind: 'wsblk-bench-profile', job: job.name, fio: result, profiles: summaries }, null, 2) + '\n');
  if (opts.jsonOnly) process.stdout.write(JSON.stringify({ job: job.name, fio: result, profiles: summaries }, null, 2) + '\n');
  else process.stdout.write(`\n${text}\n\nProfiles: ${profDir}\nSummary: ${out}\n`);
  return 0;
}
