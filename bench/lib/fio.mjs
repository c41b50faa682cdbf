// fio jobs (nbd engine) and the numbers taken from fio's JSON output.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runCommand } from './procs.mjs';

/** The jobs of issue 4, in the order they run. `metric` is what the table leads with. */
export const JOBS = [
  { name: 'randread4k-qd1', rw: 'randread', bs: '4k', iodepth: 1, dir: 'read', metric: 'iops' },
  { name: 'randread4k-qd32', rw: 'randread', bs: '4k', iodepth: 32, dir: 'read', metric: 'iops' },
  { name: 'randwrite4k-qd32', rw: 'randwrite', bs: '4k', iodepth: 32, dir: 'write', metric: 'iops' },
  { name: 'seqread1m-qd8', rw: 'read', bs: '1M', iodepth: 8, dir: 'read', metric: 'mibps' },
  { name: 'seqwrite1m-qd8', rw: 'write', bs: '1M', iodepth: 8, dir: 'write', metric: 'mibps' },
];

/** I/Os per second of a job's result (its IOPS, or its MiB/s over its block size). */
export function opsPerSecond(job, r) {
  const bs = Number.parseInt(job.bs, 10) * (/m$/i.test(job.bs) ? 1048576 : 1024);
  return job.metric === 'iops' ? r.iops : r.mibps * 1048576 / bs;
}

const pct = (p, key) => (p && p[key] !== undefined ? p[key] : null);

/** The numbers of one direction ('read' or 'write') of fio's JSON job. */
export function parseFioJob(job, dir) {
  const d = job[dir];
  const p = d.clat_ns?.percentile;
  return {
    iops: d.iops,
    mibps: d.bw_bytes / 1048576,
    ios: d.total_ios,
    clatMeanUs: d.clat_ns.mean / 1000,
    clatP50Us: pct(p, '50.000000') / 1000,
    clatP99Us: pct(p, '99.000000') / 1000,
    clatP999Us: pct(p, '99.900000') !== null ? pct(p, '99.900000') / 1000 : null,
    errors: job.error,
  };
}

/** fio's JSON: it may print "fio: connected to NBD server" lines before it; skip to the first '{'. */
function parseFioJson(text) {
  const at = text.indexOf('{');
  if (at < 0) throw new Error('fio wrote no JSON');
  return JSON.parse(text.slice(at));
}

/**
 * Runs fio with one or more job sections against NBD URIs. `sections` is a list of
 * { name, uri, ...fio options }; `common` applies to all. Resolves the parsed JSON.
 */
export async function runFio({ dir, tag, common, sections, timeoutMs }) {
  const out = join(dir, `fio-${tag}.json`);
  rmSync(out, { force: true });
  const opt = (k, v) => (v === true ? `--${k}` : `--${k}=${v}`);
  const args = [...Object.entries(common).filter(([, v]) => v !== undefined && v !== false).map(([k, v]) => opt(k, v))];
  for (const s of sections) {
    args.push(`--name=${s.name}`);
    for (const [k, v] of Object.entries(s)) if (k !== 'name' && v !== undefined && v !== false) args.push(opt(k, v));
  }
  args.push('--output-format=json', `--output=${out}`);
  const r = await runCommand(`fio-${tag}`, 'fio', args, { timeoutMs });
  let json;
  try {
    json = parseFioJson(readFileSync(out, 'utf8'));
  } catch (e) {
    const why = r.timedOut ? `timed out after ${timeoutMs} ms` : `exit ${r.code ?? r.signal}`;
    throw new Error(`fio ${tag} failed (${why}): ${(r.stderr || r.stdout).trim().split('\n').slice(-4).join(' | ') || e.message}`);
  }
  if (r.code !== 0) {
    const errs = json.jobs?.map((j) => j.error).filter((e) => e) ?? [];
    throw new Error(`fio ${tag} exited ${r.code ?? r.signal}${errs.length ? ` (job errors: ${errs.join(', ')})` : ''}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
  return { json, args };
}

/** Common options of every measured job (time based, a warm-up excluded from the numbers). */
function timedOptions({ runtime, ramp, region, cpus }) {
  return { ioengine: 'nbd', size: region, time_based: true, runtime: String(runtime), ramp_time: String(ramp), group_reporting: true, randrepeat: '0', norandommap: true, cpus_allowed: cpus };
}

/** Runs one job of JOBS against one URI; resolves its numbers. */
export async function runJob({ dir, job, uri, runtime, ramp, region, tag, cpus }) {
  const { json } = await runFio({
    dir, tag,
    timeoutMs: (runtime + ramp + 60) * 1000,
    common: timedOptions({ runtime, ramp, region, cpus }),
    sections: [{ name: job.name, uri, rw: job.rw, bs: job.bs, iodepth: job.iodepth }],
  });
  const j = json.jobs[0];
  if (j.error) throw new Error(`fio job ${job.name} reported error ${j.error}`);
  const r = parseFioJob(j, job.dir);
  // fio's own CPU (usr + sys, percent of one core), per I/O: part of the CPU-per-op figures.
  const ops = opsPerSecond(job, r);
  r.fioCpuUsPerOp = ops > 0 ? ((j.usr_cpu + j.sys_cpu) / 100) * 1e6 / ops : null;
  return r;
}

/** Writes the region once (1M sequential, QD8) so later reads are of data, not of holes. */
export async function prefill({ dir, uri, region, tag }) {
  const t0 = Date.now();
  const { json } = await runFio({
    dir, tag, timeoutMs: 300_000,
    common: { ioengine: 'nbd', size: region },
    sections: [{ name: 'prefill', uri, rw: 'write', bs: '1M', iodepth: 8 }],
  });
  return { seconds: (Date.now() - t0) / 1000, mibps: json.jobs[0].write.bw_bytes / 1048576 };
}
