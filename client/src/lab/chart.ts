// Inline SVG charts for the lab report, drawn here so the report loads nothing: line charts and
// replica-state lanes over one shared time axis, each with the run's faults shaded on it.
import { esc, num } from './escape.js';
import type { LabFault, LabSample, ReplicaState } from './results.js';

export const WIDTH = 1200;
const LEFT = 70;
const RIGHT = 20;
const PLOT_W = WIDTH - LEFT - RIGHT;
const LABEL_ROW = 15;
const AXIS_H = 30;
const CHAR_W = 6.3; // width of a character at font-size 11, to keep fault labels apart

// Okabe-Ito colours: told apart with the common colour-vision deficiencies.
export const COLOURS = { blue: '#0072B2', vermillion: '#D55E00', orange: '#E69F00', green: '#009E73', grey: '#6B6B6B', purple: '#CC79A7' };
export const STATE_STYLE: Record<ReplicaState, { fill: string; label: string }> = {
  'in-sync': { fill: COLOURS.green, label: 'in sync' },
  resyncing: { fill: COLOURS.orange, label: 'resyncing' },
  ejected: { fill: 'url(#lab-hatch)', label: 'ejected' },
  unreachable: { fill: 'url(#lab-dots)', label: 'unreachable' },
};

/** The time axis every chart shares: 0 to endS seconds across the plot width. */
export class TimeAxis {
  readonly ticks: number[];
  constructor(readonly endS: number) {
    this.ticks = ticks(endS);
  }
  x(t: number): number {
    return LEFT + (Math.min(Math.max(t, 0), this.endS) / this.endS) * PLOT_W;
  }
}

/** A fault as drawn: its span in pixels and the label row that keeps it clear of the others. */
export interface PlacedFault {
  fault: LabFault;
  x0: number;
  x1: number;
  row: number;
  label: string;
}

export function placeFaults(faults: LabFault[], axis: TimeAxis): PlacedFault[] {
  const rowEnds: number[] = [];
  return faults.map((fault) => {
    const x0 = axis.x(fault.t);
    const x1 = axis.x(fault.until ?? fault.t);
    const label = `${fault.action} ${fault.server}`;
    const right = x0 + 3 + label.length * CHAR_W;
    let row = rowEnds.findIndex((end) => end < x0);
    if (row < 0) row = rowEnds.push(0) - 1;
    rowEnds[row] = right + 6;
    return { fault, x0, x1, row, label };
  });
}

const labelRows = (placed: PlacedFault[]): number => placed.reduce((m, p) => Math.max(m, p.row + 1), 0);

export interface Series {
  name: string;
  colour: string;
  dash?: string;
  points: [t: number, value: number | null][];
}

/**
 * A line chart of series over time; a missing value breaks its line (no data in that interval).
 * On a log scale (for latency, where a timeout would flatten every usual figure) values up to 0 are missing too.
 */
export function lineChart(title: string, unit: string, series: Series[], axis: TimeAxis, faults: PlacedFault[], scale: 'linear' | 'log' = 'linear'): string {
  const plotH = 170;
  const top = 26 + labelRows(faults) * LABEL_ROW;
  const height = top + plotH + AXIS_H;
  const valid = (v: number | null): v is number => v !== null && Number.isFinite(v) && (scale === 'linear' || v > 0);
  const values = series.flatMap((s) => s.points.map(([, v]) => v).filter(valid));
  const y = scale === 'log' ? logScale(values, top, plotH) : linearScale(values, top, plotH);
  const out: string[] = [svgOpen(title, height)];
  out.push(faultSpans(faults, top, plotH));
  for (const v of y.ticks) {
    out.push(`<line class="grid" x1="${LEFT}" x2="${LEFT + PLOT_W}" y1="${f(y.at(v))}" y2="${f(y.at(v))}"/>`);
    out.push(`<text class="tick" x="${LEFT - 6}" y="${f(y.at(v) + 4)}" text-anchor="end">${esc(String(Number(v.toPrecision(3))))}</text>`);
  }
  out.push(`<text class="unit" x="${LEFT - 6}" y="${top - 12}" text-anchor="end">${esc(unit)}${scale === 'log' ? ' (log)' : ''}</text>`);
  for (const s of series) {
    const points = s.points.map(([t, v]): [number, number | null] => [t, valid(v) ? v : null]);
    const d = pathData(points, axis, y.at);
    const dash = s.dash ? ` stroke-dasharray="${esc(s.dash)}"` : '';
    if (d) out.push(`<path class="series" data-series="${esc(s.name)}" d="${d}" stroke="${esc(s.colour)}"${dash}><title>${esc(s.name)}</title></path>`);
    // A lone point between gaps draws no line: mark it.
    for (const [t, v] of lonePoints(points)) out.push(`<circle cx="${f(axis.x(t))}" cy="${f(y.at(v))}" r="2.5" fill="${esc(s.colour)}"/>`);
  }
  out.push(legend(series.map((s) => ({ label: s.name, swatch: lineSwatch(s) }))));
  out.push(timeAxis(axis, top + plotH), faultLabels(faults, top), '</svg>');
  return out.join('\n');
}

interface ValueScale {
  ticks: number[];
  at: (v: number) => number;
}

function linearScale(values: number[], top: number, plotH: number): ValueScale {
  const max = niceMax(Math.max(0, ...values));
  return { ticks: ticks(max), at: (v) => top + plotH - (v / max) * plotH };
}

// Powers of ten around the data, at least one decade.
function logScale(values: number[], top: number, plotH: number): ValueScale {
  const lo = values.length ? Math.floor(Math.log10(Math.min(...values))) : 0;
  const hi = Math.max(lo + 1, values.length ? Math.ceil(Math.log10(Math.max(...values))) : 1);
  const decades = Array.from({ length: hi - lo + 1 }, (_, i) => Number((10 ** (lo + i)).toPrecision(3)));
  return { ticks: decades, at: (v) => top + plotH - ((Math.log10(v) - lo) / (hi - lo)) * plotH };
}

/** One lane per replica, each interval filled by the replica's state then; resync drawn as progress. */
export function stateLanes(title: string, samples: LabSample[], replicas: string[], axis: TimeAxis, faults: PlacedFault[]): string {
  const laneH = 26;
  const gap = 8;
  const top = 26 + labelRows(faults) * LABEL_ROW;
  const plotH = Math.max(1, replicas.length) * (laneH + gap);
  const height = top + plotH + AXIS_H;
  const out: string[] = [svgOpen(title, height), patterns()];
  out.push(faultSpans(faults, top, plotH));
  replicas.forEach((name, lane) => {
    const y0 = top + lane * (laneH + gap) + gap / 2;
    // The margin holds about ten characters; the whole name is in the tooltip.
    const shown = name.length > 10 ? `${name.slice(0, 9)}…` : name;
    out.push(`<text class="lane" x="${LEFT - 6}" y="${y0 + laneH / 2 + 4}" text-anchor="end">${esc(shown)}<title>${esc(name)}</title></text>`);
    out.push(`<rect class="lane-bg" x="${LEFT}" y="${y0}" width="${PLOT_W}" height="${laneH}"/>`);
    for (const seg of segments(samples, name)) {
      const x0 = axis.x(seg.t0);
      const w = Math.max(0.5, axis.x(seg.t1) - x0);
      const style = STATE_STYLE[seg.state] ?? STATE_STYLE.unreachable;
      const pct = seg.state === 'resyncing' && seg.percent.length > 0 ? ` ${num(seg.percent.at(-1)![1], 0)}%` : '';
      const tip = `${name}: ${style.label}${pct}, ${num(seg.t0)}–${num(seg.t1)} s`;
      out.push(`<rect class="state" data-state="${esc(seg.state)}" x="${x0}" y="${y0}" width="${w}" height="${laneH}" fill="${style.fill}"><title>${esc(tip)}</title></rect>`);
      if (seg.state === 'resyncing' && seg.percent.length > 0) {
        const py = (p: number): number => y0 + laneH - (Math.min(100, Math.max(0, p)) / 100) * (laneH - 4) - 2;
        const d = seg.percent.map(([t, p], i) => `${i ? 'L' : 'M'}${f(axis.x(t))} ${f(py(p))}`).join(' ');
        out.push(`<path class="progress" d="${d}" stroke="#000"/>`);
      }
      const text = `${style.label}${pct}`;
      if (w > text.length * CHAR_W + 8) {
        out.push(`<text class="state-label" x="${x0 + 4}" y="${y0 + laneH / 2 + 4}">${esc(text)}</text>`);
      }
    }
  });
  // The lanes hide the shaded spans: mark where each fault starts and ends over them.
  out.push(faults.map((p) => [p.x0, p.x1].filter((x, i) => i === 0 || x > p.x0)
    .map((x) => `<line class="fault-edge" x1="${f(x)}" x2="${f(x)}" y1="${top}" y2="${top + plotH}"/>`).join('')).join('\n'));
  out.push(legend((Object.keys(STATE_STYLE) as ReplicaState[]).map((s) => ({
    label: STATE_STYLE[s].label, swatch: `<rect width="14" height="10" y="-9" fill="${STATE_STYLE[s].fill}" stroke="#444" stroke-width="0.5"/>`,
  }))));
  out.push(timeAxis(axis, top + plotH), faultLabels(faults, top), '</svg>');
  return out.join('\n');
}

interface Segment {
  state: ReplicaState;
  t0: number;
  t1: number;
  percent: [number, number][];
}

// Consecutive samples with one state become one segment; a sample covers (previous t, t].
function segments(samples: LabSample[], name: string): Segment[] {
  const out: Segment[] = [];
  let prevT = 0;
  for (const s of samples) {
    const r = s.replicas.find((x) => x.name === name);
    const t0 = prevT;
    prevT = s.t;
    if (!r) continue;
    const last = out.at(-1);
    const percent: [number, number][] = r.state === 'resyncing' && Number.isFinite(r.resyncPercent) ? [[s.t, r.resyncPercent!]] : [];
    if (last && last.state === r.state && last.t1 === t0) {
      last.t1 = s.t;
      last.percent.push(...percent);
    } else {
      out.push({ state: r.state, t0, t1: s.t, percent });
    }
  }
  return out;
}

function svgOpen(title: string, height: number): string {
  return `<svg class="chart" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="${esc(title)}" xmlns="http://www.w3.org/2000/svg">` +
    `<title>${esc(title)}</title><text class="chart-title" x="${LEFT}" y="16">${esc(title)}</text>`;
}

function faultSpans(faults: PlacedFault[], top: number, plotH: number): string {
  return faults.map((p) => {
    const tip = `${p.label} at ${num(p.fault.t)} s${p.fault.until !== undefined ? ` until ${num(p.fault.until)} s` : ''}${p.fault.detail ? `: ${p.fault.detail}` : ''}`;
    const w = p.x1 - p.x0;
    const shape = w >= 1
      ? `<rect class="fault" x="${f(p.x0)}" y="${top}" width="${f(w)}" height="${plotH}"/>`
      : `<line class="fault-mark" x1="${f(p.x0)}" x2="${f(p.x0)}" y1="${top}" y2="${top + plotH}"/>`;
    return `<g class="fault-span">${shape}<title>${esc(tip)}</title></g>`;
  }).join('\n');
}

function faultLabels(faults: PlacedFault[], top: number): string {
  const rows = labelRows(faults);
  return faults.map((p) => {
    const y = top - (rows - p.row) * LABEL_ROW + 11;
    return `<line class="fault-tick" x1="${f(p.x0)}" x2="${f(p.x0)}" y1="${y - 10}" y2="${top}"/>` +
      `<text class="fault-label" x="${f(p.x0 + 3)}" y="${y}">${esc(p.label)}</text>`;
  }).join('\n');
}

function timeAxis(axis: TimeAxis, y: number): string {
  const out = [`<line class="axis" x1="${LEFT}" x2="${LEFT + PLOT_W}" y1="${y}" y2="${y}"/>`];
  for (const t of axis.ticks) {
    const x = axis.x(t);
    out.push(`<line class="axis" x1="${f(x)}" x2="${f(x)}" y1="${y}" y2="${y + 4}"/>`);
    out.push(`<text class="tick" x="${f(x)}" y="${y + 16}" text-anchor="middle">${esc(num(t, 2))}</text>`);
  }
  out.push(`<text class="unit" x="${LEFT + PLOT_W}" y="${y + 28}" text-anchor="end">seconds since start</text>`);
  return out.join('\n');
}

function legend(items: { label: string; swatch: string }[]): string {
  let x = WIDTH - RIGHT;
  const parts: string[] = [];
  for (const item of [...items].reverse()) {
    x -= item.label.length * CHAR_W + 26;
    parts.push(`<g class="legend" transform="translate(${f(x)} 16)">${item.swatch}<text x="18" y="0">${esc(item.label)}</text></g>`);
  }
  return parts.join('');
}

const lineSwatch = (s: Series): string =>
  `<line x1="0" x2="14" y1="-4" y2="-4" stroke="${esc(s.colour)}" stroke-width="2.5"${s.dash ? ` stroke-dasharray="${esc(s.dash)}"` : ''}/>`;

function patterns(): string {
  return `<defs>
<pattern id="lab-hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
<rect width="8" height="8" fill="${COLOURS.vermillion}"/><line x1="0" y1="0" x2="0" y2="8" stroke="#fff" stroke-width="3"/></pattern>
<pattern id="lab-dots" width="6" height="6" patternUnits="userSpaceOnUse">
<rect width="6" height="6" fill="#d9d9d9"/><circle cx="3" cy="3" r="1.4" fill="${COLOURS.grey}"/></pattern>
</defs>`;
}

function pathData(points: Series['points'], axis: TimeAxis, y: (v: number) => number): string {
  let d = '';
  let pen = false;
  for (const [t, v] of points) {
    if (v === null || !Number.isFinite(v)) {
      pen = false;
      continue;
    }
    d += `${pen ? 'L' : 'M'}${f(axis.x(t))} ${f(y(v))} `;
    pen = true;
  }
  return d.trim();
}

function lonePoints(points: Series['points']): [number, number][] {
  const ok = (i: number): boolean => i >= 0 && i < points.length && points[i]![1] !== null && Number.isFinite(points[i]![1]);
  return points.flatMap(([t, v], i) => (ok(i) && !ok(i - 1) && !ok(i + 1) ? [[t, v as number] as [number, number]] : []));
}

// Ticks at 1, 2 or 5 times a power of ten, about five of them from 0 to max.
function ticks(max: number): number[] {
  if (!(max > 0)) return [0];
  const raw = max / 5;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

// The top of a value axis: the first tick at or above max, so the highest point sits inside.
function niceMax(max: number): number {
  if (!(max > 0)) return 1;
  const t = ticks(max);
  const step = t.length > 1 ? t[1]! : max;
  return Math.ceil(max / step - 1e-9) * step;
}

const f = (v: number): string => String(Math.round(v * 10) / 10);
