// The lab report: one HTML file a person opens after a run, with nothing to fetch and no script.
// The verdict first, then IOPS, latency and replica states on one time axis with the faults shaded.
import { COLOURS, TimeAxis, lineChart, placeFaults, stateLanes } from './chart.js';
import { esc, num } from './escape.js';
import type { LabRun } from './results.js';

export type { LabRun, LabCheck, LabSample, LabFault, LabFioSummary, ReplicaState } from './results.js';

// No script, no remote anything: the policy makes a stray tag in the data inert as well.
const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1a1a1a; background: #fff; margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 20px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #444; margin: 0 0 16px; }
.verdict { display: flex; align-items: center; gap: 20px; padding: 16px 20px; border-radius: 6px; color: #fff; }
.verdict.pass { background: #0a6b3b; } .verdict.fail { background: #a4161a; }
.verdict .word { font-size: 44px; font-weight: 800; letter-spacing: 2px; }
.checks { list-style: none; padding: 0; margin: 12px 0 0; }
.checks li { border: 1px solid #ccc; border-left-width: 6px; border-radius: 4px; padding: 8px 12px; margin: 6px 0; }
.checks li.pass { border-left-color: #0a6b3b; } .checks li.fail { border-left-color: #a4161a; background: #fff5f5; }
.checks .mark { font-weight: 700; margin-right: 6px; } .checks li.pass .mark { color: #0a6b3b; } .checks li.fail .mark { color: #a4161a; }
.checks pre, pre.detail { white-space: pre-wrap; word-break: break-word; margin: 4px 0 0; font: 12.5px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; }
svg.chart { display: block; width: 100%; height: auto; margin: 8px 0 18px; }
svg .chart-title { font: 600 14px system-ui, sans-serif; fill: #1a1a1a; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .unit { fill: #555; } svg .lane { font-weight: 600; }
svg .grid { stroke: #e3e3e3; } svg .axis { stroke: #555; }
svg .series { fill: none; stroke-width: 2; stroke-linejoin: round; }
svg .progress { fill: none; stroke-width: 1.5; }
svg .lane-bg { fill: #f4f4f4; }
svg .state { stroke: #fff; stroke-width: 0.5; }
svg .state-label { font-weight: 600; fill: #111; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
svg .fault { fill: ${COLOURS.purple}; fill-opacity: 0.16; stroke: ${COLOURS.purple}; stroke-opacity: 0.7; }
svg .fault-mark, svg .fault-tick, svg .fault-edge { stroke: #8a3f6b; stroke-width: 1.5; stroke-dasharray: 3 2; }
svg .fault-label { fill: #6d2c54; font-weight: 600; }
table { border-collapse: collapse; margin: 6px 0; } th, td { text-align: left; padding: 3px 12px 3px 0; vertical-align: top; }
th { color: #444; font-weight: 600; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 8px 24px; }
`;

export function renderReport(given: LabRun): string {
  // A sample or fault with no usable time cannot be placed; drawing it would put NaN in the SVG.
  const run = { ...given, samples: given.samples.filter((s) => Number.isFinite(s.t)), faults: given.faults.filter((f) => Number.isFinite(f.t)) };
  const endS = Math.max(run.durationS || 0, ...run.samples.map((s) => s.t), ...run.faults.map((f) => f.until ?? f.t), 1);
  const axis = new TimeAxis(endS);
  const faults = placeFaults(run.faults, axis);
  const at = (pick: (s: LabRun['samples'][number]) => number | null): [number, number | null][] => run.samples.map((s) => [s.t, pick(s)]);
  const replicas = replicaNames(run);

  const charts = [
    lineChart('I/O operations per second', 'IOPS', [
      { name: 'read', colour: COLOURS.blue, points: at((s) => s.readIops) },
      { name: 'write', colour: COLOURS.vermillion, dash: '7 3', points: at((s) => s.writeIops) },
    ], axis, faults),
    lineChart('Latency', 'ms', [
      { name: 'p50', colour: COLOURS.blue, points: at((s) => s.p50Ms) },
      { name: 'p99', colour: COLOURS.vermillion, dash: '7 3', points: at((s) => s.p99Ms) },
    ], axis, faults, 'log'),
    stateLanes('Replica states', run.samples, replicas, axis, faults),
  ];

  const title = `${run.scenario.name}: ${run.verdict.ok ? 'PASS' : 'FAIL'}`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${esc(CSP)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · wsblk lab</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>wsblk lab: ${esc(run.scenario.name)}</h1>
<p class="meta">${run.scenario.description ? `${esc(run.scenario.description)}<br>` : ''}Started ${esc(run.startedAt)} · ${esc(num(run.durationS))} s${run.scenario.file ? ` · ${esc(run.scenario.file)}` : ''}</p>
${verdict(run)}
<h2>Over time</h2>
${charts.join('\n')}
${faultTable(run)}
${setup(run)}
</main>
</body>
</html>
`;
}

function verdict(run: LabRun): string {
  const ok = run.verdict.ok;
  const passed = run.verdict.checks.filter((c) => c.ok).length;
  const checks = run.verdict.checks.map((c) => `<li class="${c.ok ? 'pass' : 'fail'}"><span class="mark">${c.ok ? '✓ PASS' : '✗ FAIL'}</span>` +
    `<strong>${esc(c.name)}</strong>${c.detail ? `<pre>${esc(c.detail)}</pre>` : ''}</li>`).join('\n');
  return `<section aria-label="verdict">
<div class="verdict ${ok ? 'pass' : 'fail'}" id="verdict"><span class="word">${ok ? 'PASS' : 'FAIL'}</span>` +
    `<span>${passed} of ${run.verdict.checks.length} checks passed</span></div>
<ul class="checks">
${checks}
</ul>
</section>`;
}

function faultTable(run: LabRun): string {
  if (run.faults.length === 0) return '<h2>Faults</h2><p>None were scheduled.</p>';
  const rows = run.faults.map((f) => `<tr><td class="n">${esc(num(f.t))} s</td><td class="n">${f.until !== undefined ? `${esc(num(f.until))} s` : ''}</td>` +
    `<td>${esc(f.action)}</td><td>${esc(f.server)}</td><td>${esc(f.detail ?? '')}</td></tr>`).join('\n');
  return `<h2>Faults</h2>
<table><thead><tr><th>from</th><th>until</th><th>action</th><th>server</th><th>detail</th></tr></thead>
<tbody>
${rows}
</tbody></table>`;
}

function setup(run: LabRun): string {
  const servers = run.servers.map((s) => `<tr><td>${esc(s.name)}</td><td>${esc(s.url)}</td></tr>`).join('\n');
  const fio = run.fio
    ? `<div><h2>fio</h2><table>${Object.entries(run.fio).map(([k, v]) => `<tr><th>${esc(k)}</th><td class="n">${esc(typeof v === 'number' ? num(v) : v)}</td></tr>`).join('')}</table></div>`
    : '';
  return `<div class="cols">
<div><h2>Servers</h2><table><thead><tr><th>name</th><th>URL</th></tr></thead><tbody>
${servers}
</tbody></table></div>
<div><h2>Device</h2><pre class="detail">${esc(JSON.stringify(run.device, null, 2))}</pre></div>
<div><h2>Workload</h2><pre class="detail">${esc(JSON.stringify(run.workload, null, 2))}</pre></div>
${fio}
</div>`;
}

// Lanes in the order of the servers list, then any replica only the samples name.
function replicaNames(run: LabRun): string[] {
  const names = run.servers.map((s) => s.name).filter((n) => run.samples.some((s) => s.replicas.some((r) => r.name === n)));
  for (const s of run.samples) for (const r of s.replicas) if (!names.includes(r.name)) names.push(r.name);
  return names;
}
