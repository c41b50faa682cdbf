// Medians, ratios, the goals of issue 4, and the printed table.

export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** Per-field median over rounds of one job on one target. */
export function medianOf(runs) {
  const ok = runs.filter((r) => r && !r.error);
  if (!ok.length) return null;
  const out = {};
  for (const k of Object.keys(ok[0])) if (typeof ok[0][k] === 'number') out[k] = median(ok.map((r) => r[k]));
  return out;
}

const ratio = (a, b) => (a == null || b == null || b === 0 ? null : a / b);

/** ours / peer for throughput (higher is better for ours) and latency (lower is better for ours). */
export function ratios(job, med) {
  const out = {};
  for (const peer of ['nbdkit1', 'nbdkit2', 'base']) {
    const o = med.ours;
    const p = med[peer];
    out[peer] = {
      iops: ratio(o?.iops, p?.iops),
      mibps: ratio(o?.mibps, p?.mibps),
      clatP50: ratio(o?.clatP50Us, p?.clatP50Us),
      clatP99: ratio(o?.clatP99Us, p?.clatP99Us),
      cpu: ratio(o?.cpuUsPerOp, p?.cpuUsPerOp),
    };
  }
  // The replica set against one server (set3 / ours): what replication costs, or gains.
  const vs = (a, b) => ({ iops: ratio(a?.iops, b?.iops), mibps: ratio(a?.mibps, b?.mibps), clatP50: ratio(a?.clatP50Us, b?.clatP50Us), clatP99: ratio(a?.clatP99Us, b?.clatP99Us), cpu: ratio(a?.cpuUsPerOp, b?.cpuUsPerOp), cephCpu: ratio(a?.cephCpuUsPerOp, b?.cephCpuUsPerOp) });
  out.set3 = vs(med.set3, med.ours);
  // set3 against the --baseline checkout's set3: the A/B of a replica-set lever.
  out.baseset3 = vs(med.set3, med.baseset3);
  // wsblk in front of Ceph against qemu-nbd's rbd driver on the same cluster (issue 15).
  out.rbd = vs(med.rbd, med.qemurbd);
  return out;
}

export const LIMITS = { clientRssMiB: 150, serverRssMiB: 300 };

/** The goals of issue 4: each { goal, measured, limit, pass: true|false|null (not measured), note }. */
export function checkGoals(results) {
  const goals = [];
  const r = (job, peer, field) => results.jobs[job]?.ratios?.[peer]?.[field] ?? null;
  const atLeast = (goal, value, limit, note) => goals.push({ goal, measured: value, limit: `>= ${limit.toFixed(1)}x`, pass: value == null ? null : value >= limit, note });
  const atMost = (goal, value, limit, unit, note) => goals.push({ goal, measured: value, limit: `<= ${unit === "x" ? limit.toFixed(1) : limit}${unit}`, pass: value == null ? null : value <= limit, note });
  atLeast('4k QD32 randread IOPS vs nbdkit 1 hop', r('randread4k-qd32', 'nbdkit1', 'iops'), 1.0);
  atLeast('4k QD32 randread IOPS vs nbdkit 2 hops', r('randread4k-qd32', 'nbdkit2', 'iops'), 2.0);
  atLeast('4k QD32 randwrite IOPS vs nbdkit 1 hop', r('randwrite4k-qd32', 'nbdkit1', 'iops'), 1.0);
  atLeast('4k QD32 randwrite IOPS vs nbdkit 2 hops', r('randwrite4k-qd32', 'nbdkit2', 'iops'), 2.0);
  atLeast('1M QD8 seq read MiB/s vs nbdkit 1 hop', r('seqread1m-qd8', 'nbdkit1', 'mibps'), 1.5);
  atLeast('1M QD8 seq write MiB/s vs nbdkit 1 hop', r('seqwrite1m-qd8', 'nbdkit1', 'mibps'), 1.5);
  atMost('4k QD1 randread p50 latency vs nbdkit 2 hops', r('randread4k-qd1', 'nbdkit2', 'clatP50'), 1.0, 'x', 'ratio < 1: ours is faster');
  atMost('client (daemon) RSS per device at depth 128', results.rss?.depth128?.daemonPeakRssMiB ?? null, LIMITS.clientRssMiB, ' MiB',
    'peak VmRSS sampled during 4k and 1M randrw at iodepth 128');
  atMost('server RSS with 8 connected devices', results.rss?.eightDevices?.serverPeakRssMiB ?? null, LIMITS.serverRssMiB, ' MiB',
    'peak VmRSS sampled under light load; includes the data the memory exports hold');
  atLeast('replica set of 3: 4k QD32 randwrite IOPS vs one server (issue 13)', r('randwrite4k-qd32', 'set3', 'iops'), 0.7);
  atLeast('replica set of 3: 4k QD32 randread IOPS vs one server (issue 13)', r('randread4k-qd32', 'set3', 'iops'), 1.0);
  const rs = results.resync;
  goals.push({ goal: 'replica set: resync rate at the default limit (issue 13)', measured: rs?.mibps ?? null, limit: 'measured', pass: null,
    note: rs ? (rs.error ? `error: ${rs.error}` : `${rs.mib} MiB written while a replica was stalled, resynced in ${rs.seconds.toFixed(1)} s after it returned (limit ${rs.limitMiBps} MiB/s)`) : 'needs target set3' });
  goals.push({ goal: 'in the VM: ublk path vs kernel nbd at 4k QD32', measured: null, limit: '>= 1.0x', pass: null, note: 'measured only by node bench/run.mjs --vm' });
  return goals;
}

export const fmtNum = (v, digits) => {
  if (v == null) return '-';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  return v.toFixed(digits);
};
export const fmtRatio = (v) => (v == null ? '-' : `${v.toFixed(2)}x`);
export const fmtUs = (v) => (v == null ? '-' : v >= 10000 ? `${(v / 1000).toFixed(1)} ms` : `${Math.round(v)} us`);

export function table(rows, header) {
  const all = [header, ...rows];
  const w = header.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => (i < 2 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join('  ');
  return [line(header), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

/** The table's target columns, in this order; each shown when the run had that target. */
const COLUMNS = [['ours', 'ours'], ['nbdkit1', 'nbdkit-1hop'], ['nbdkit2', 'nbdkit-2hop'], ['base', 'base'], ['set3', 'set3'], ['baseset3', 'baseset3'], ['rbd', 'rbd'], ['qemurbd', 'qemurbd']];
/** Its ratio columns: [key in ratios(), header, the two targets it needs]. */
const RATIO_COLUMNS = [['nbdkit1', 'ours/1hop', 'ours', 'nbdkit1'], ['nbdkit2', 'ours/2hop', 'ours', 'nbdkit2'], ['base', 'ours/base', 'ours', 'base'],
  ['set3', 'set3/ours', 'set3', 'ours'], ['baseset3', 'set3/baseset3', 'set3', 'baseset3'], ['rbd', 'rbd/qemurbd', 'rbd', 'qemurbd']];

/** The results table (text), the RSS lines and the goals. */
export function formatReport(results) {
  const out = [];
  const rows = [];
  const ran = (t) => Object.values(results.jobs).some((j) => j.median[t]);
  const columns = COLUMNS.filter(([t]) => ran(t));
  const ratioColumns = RATIO_COLUMNS.filter(([, , a, b]) => ran(a) && ran(b));
  const base = ran('base');
  const cephCpu = Object.values(results.jobs).some((j) => Object.values(j.median).some((m) => m?.cephCpuUsPerOp != null));
  const us = (v) => (v == null ? '-' : `${v.toFixed(1)} us`);
  for (const [name, j] of Object.entries(results.jobs)) {
    const m = j.median;
    const primary = j.metric === 'iops' ? ['IOPS', 'iops', 0] : ['MiB/s', 'mibps', 1];
    const row = (label, value, fmt, field) => [label, value, ...columns.map(([t]) => fmt(m[t])), ...ratioColumns.map(([k]) => fmtRatio(j.ratios[k]?.[field]))];
    rows.push(row(name, primary[0], (x) => fmtNum(x?.[primary[1]], primary[2]), primary[1]));
    rows.push(row('', 'p50 clat', (x) => fmtUs(x?.clatP50Us), 'clatP50'));
    rows.push(row('', 'p99 clat', (x) => fmtUs(x?.clatP99Us), 'clatP99'));
    rows.push(row('', 'CPU/op', (x) => us(x?.cpuUsPerOp), 'cpu'));
    if (cephCpu) rows.push(row('', 'Ceph CPU/op', (x) => us(x?.cephCpuUsPerOp), 'cephCpu'));
  }
  out.push(`Median of ${results.options.rounds} interleaved round(s), ${results.options.runtime} s each (+${results.options.ramp} s ramp), region ${results.options.region} of a ${results.options.size} disk; `
    + `ours --compress ${results.options.compress}; nbdkit 2 hops over a ${results.options.nbdkit2Hop === 'tcp' ? 'loopback TCP' : 'Unix'} socket.`
    + (base ? ` base: wsblk of ${results.options.baseline}.` : '')
    + (results.options.pin ? ' --pin: servers on CPU 1, daemon and fio on CPU 0.' : ''));
  out.push('Throughput ratio ours/peer: higher is better for ours. Latency ratio ours/peer: LOWER is better for ours.');
  out.push('CPU/op: CPU time (user + system) of the target\'s processes and fio per I/O, ramp included; LOWER is better. Steadier than IOPS on a loaded machine.');
  if (ran('set3')) out.push('set3: the same device over a replica set of 3 servers; set3/ours: the replica set against one server.');
  if (ran('baseset3')) out.push('baseset3: set3 with the wsblk of the --baseline checkout; set3/baseset3: the A/B of a replica-set change.');
  if (ran('rbd') || ran('qemurbd')) {
    out.push(`rbd: ours with an rbd: export; qemurbd: qemu-nbd (cache=writeback) through qemu's rbd driver; each its own ${results.options.size} image on ${results.ceph?.cluster ?? 'a Ceph cluster'}; rbd/qemurbd: wsblk in front of Ceph against qemu-nbd.`);
    if (cephCpu) out.push('Ceph CPU/op: the monitor\'s and OSD\'s CPU per I/O (not in CPU/op): the cost both Ceph targets share.');
  }
  out.push(table(rows, ['job', 'metric', ...columns.map(([, h]) => h), ...ratioColumns.map(([, h]) => h)]));
  const failed = Object.entries(results.jobs).flatMap(([name, j]) => Object.entries(j.runs).flatMap(([t, runs]) => runs.filter((x) => x.error).map((x) => `${name} on ${t}: ${x.error}`)));
  if (failed.length) out.push('', 'Failed runs:', ...failed.map((f) => `  ${f}`));

  const rss = results.rss ?? {};
  out.push('', 'Memory (VmRSS now / VmHWM peak, MiB):');
  if (rss.afterRuns) {
    const a = rss.afterRuns;
    const f = (x) => (x ? `${x.rssMiB.toFixed(0)} / ${x.hwmMiB.toFixed(0)}` : '-');
    out.push(`  after the runs: ours daemon ${f(a.daemon)}, ours server ${f(a.server)} (holds ${a.serverDataMiB} MiB of prefilled data); nbdkit 1 hop ${f(a.nbdkit1)}; nbdkit 2 hops: forwarder ${f(a.nbdkit2forwarder)}, memory ${f(a.nbdkit2memory)}`);
  }
  if (rss.depth128) {
    const d = rss.depth128;
    const ph = Object.entries(d.phases ?? {}).map(([bs, p]) => `${bs} ${p.daemonPeakRssMiB.toFixed(0)}`).join(', ');
    out.push(`  depth 128 (4k and 1M randrw, QD128): daemon peak ${d.daemonPeakRssMiB.toFixed(0)} MiB (${ph}; VmHWM ${d.daemonHwmMiB.toFixed(0)}), server peak ${d.serverPeakRssMiB.toFixed(0)} MiB`
      + `${d.errors?.length ? `; errors: ${d.errors.join('; ')}` : ''}`);
  }
  if (rss.eightDevices) {
    const e = rss.eightDevices;
    out.push(`  8 devices on one server (${e.load}): server peak ${e.serverPeakRssMiB.toFixed(0)} MiB (VmHWM ${e.serverHwmMiB.toFixed(0)}; holds <= ${e.serverDataMiB} MiB of data), `
      + `daemons peak max ${e.daemonPeakRssMiBMax.toFixed(0)} MiB, sum ${e.daemonPeakRssMiBSum.toFixed(0)} MiB`
      + `${e.perDeviceIops ? `; IOPS per device ${Math.min(...e.perDeviceIops)}-${Math.max(...e.perDeviceIops)}` : ''}${e.error ? `; error: ${e.error}` : ''}`);
  }
  if (rss.skipped) out.push(`  ${rss.skipped}`);

  out.push('', 'Goals of issues 4 and 13:');
  for (const g of results.goals) {
    const verdict = g.pass === null ? 'N/A ' : g.pass ? 'PASS' : 'FAIL';
    const measured = g.measured == null ? 'not measured' : g.limit.endsWith('x') ? `${g.measured.toFixed(2)}x` : g.limit === 'measured' ? `${g.measured.toFixed(0)} MiB/s` : `${g.measured.toFixed(0)} MiB`;
    out.push(`  ${verdict}  ${g.goal}: ${measured} (goal ${g.limit})${g.note ? ` - ${g.note}` : ''}`);
  }
  return out.join('\n');
}
