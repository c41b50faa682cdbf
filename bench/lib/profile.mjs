// Reads a V8 .cpuprofile (node --cpu-prof) and sums self time per function and per area.
import { readFileSync } from 'node:fs';

/** Where a frame's code lives: our packages, a dependency, Node itself, or a V8 pseudo-frame. */
function areaOf(url, functionName) {
  if (!url) {
    if (/^\((garbage collector|idle|program|root)\)$/.test(functionName)) return functionName;
    return '(native/V8 builtins)';
  }
  const dep = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dep) return `dep:${dep[1]}`;
  if (url.startsWith('node:')) return 'node core';
  const ours = /\/(shared|server|client|native)\/dist\//.exec(url);
  if (ours) return `wsblk:${ours[1]}`;
  return url;
}

const CALLER_FUNCTIONS = 3;
const CALLER_DEPTH = 10;

const fnKey = ({ functionName, url, lineNumber }) => `${functionName || '(anonymous)'}\t${url}\t${url ? lineNumber + 1 : ''}`;

const shortUrl = (url) => url
  .replace(/^file:\/\//, '')
  .replace(/^.*\/node_modules\//, '')
  .replace(/^.*\/(shared|server|client|native)\/dist\//, '$1/');

/**
 * Self time per function (name + url + line) and per area, in ms and % of all samples and of
 * busy samples (excluding "(idle)").
 */
export function summarizeProfile(path) {
  const prof = JSON.parse(readFileSync(path, 'utf8'));
  const totalMs = (prof.endTime - prof.startTime) / 1000;
  const nSamples = prof.samples?.length || prof.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0);
  const msPerSample = nSamples ? totalMs / nSamples : 0;
  const byFn = new Map();
  const byArea = new Map();
  let idle = 0;
  for (const n of prof.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    const name = functionName || '(anonymous)';
    if (name === '(idle)') idle += hits;
    const key = fnKey(n.callFrame);
    byFn.set(key, (byFn.get(key) ?? 0) + hits);
    const area = areaOf(url, name);
    byArea.set(area, (byArea.get(area) ?? 0) + hits);
  }
  const busy = nSamples - idle;
  const row = (hits) => ({
    samples: hits,
    ms: +(hits * msPerSample).toFixed(1),
    pctAll: +((100 * hits) / nSamples).toFixed(1),
    pctBusy: busy > 0 ? +((100 * hits) / busy).toFixed(1) : 0,
  });
  const functions = [...byFn.entries()].sort((a, b) => b[1] - a[1]).map(([key, hits]) => {
    const [fn, url, line] = key.split('\t');
    return { key, function: fn, where: url ? `${shortUrl(url)}:${line}` : '', area: areaOf(url, fn), ...row(hits) };
  });
  // Who calls the heaviest functions: the nearest frames above each, summed per chain.
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parentOf = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  const callers = {};
  for (const f of functions.filter((x) => x.function !== '(idle)' && !x.function.startsWith('(')).slice(0, CALLER_FUNCTIONS)) {
    const chains = new Map();
    for (const n of prof.nodes) {
      if (!n.hitCount || fnKey(n.callFrame) !== f.key) continue;
      const chain = [];
      for (let id = parentOf.get(n.id); id !== undefined && chain.length < CALLER_DEPTH; id = parentOf.get(id)) {
        const cf = byId.get(id).callFrame;
        if (cf.functionName === '(root)') break;
        chain.push(`${cf.functionName || '(anonymous)'} ${cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : ''}`.trim());
      }
      const k = chain.join(' < ');
      chains.set(k, (chains.get(k) ?? 0) + n.hitCount);
    }
    callers[`${f.function} ${f.where}`.trim()] = [...chains.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3)
      .map(([chain, hits]) => ({ pctOfFunction: +((100 * hits) / f.samples).toFixed(1), chain }));
  }
  for (const f of functions) delete f.key;
  const areas = [...byArea.entries()].sort((a, b) => b[1] - a[1]).map(([area, hits]) => ({ area, ...row(hits) }));
  return { file: path, totalMs: +totalMs.toFixed(0), samples: nSamples, busyPct: +((100 * busy) / nSamples).toFixed(1), functions, areas, callers };
}
