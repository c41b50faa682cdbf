// The lab report is checked as people will see it: rendered by a real headless chromium, driven
// over the DevTools protocol, which reports console calls, uncaught exceptions and failed loads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { renderReport, type LabRun, type LabSample } from '../../../client/dist/lab/report.js';
import { Browser } from '../support/browser.js';
import { requireTool, tempDir } from '../support/procs.js';

// A 40 s run: s2 killed at 10 s and restarted at 25 s (unreachable, ejected, resyncing, in sync),
// s3 black-holed for 4 s, s1 slowed from 30 s; IOPS dip and latency peaks while faults are on.
function syntheticRun(names = { s1: 's1', s2: 's2', s3: 's3' }, detail = 'compared 16384 blocks of 4096 bytes'): LabRun {
  const order = Object.values(names);
  const url = (n: string): string => `ws://127.0.0.1:${41001 + order.indexOf(n)}/mem`;
  const samples: LabSample[] = [];
  for (let t = 1; t <= 40; t++) {
    const s2 = t <= 10 ? 'in-sync' : t <= 13 ? 'unreachable' : t <= 25 ? 'ejected' : t <= 31 ? 'resyncing' : 'in-sync';
    const s3 = t > 16 && t <= 20 ? 'unreachable' : 'in-sync';
    const slow = t > 30 && t <= 35;
    samples.push({
      t,
      readIops: t >= 11 && t <= 13 ? 300 : 1800 + (t % 5) * 40,
      writeIops: t >= 11 && t <= 13 ? 200 : slow ? 1500 : 2600 + (t % 3) * 60,
      p50Ms: t === 12 ? null : t >= 11 && t <= 13 ? 9 : 0.6 + (t % 4) * 0.05,
      p99Ms: t === 12 ? null : t >= 11 && t <= 13 ? 3100 : slow ? 48 : 3 + (t % 4),
      replicas: [
        { name: names.s1, url: url(names.s1), state: 'in-sync' },
        { name: names.s2, url: url(names.s2), state: s2, ...(s2 === 'resyncing' && { resyncPercent: (t - 25) * 16 }) },
        { name: names.s3, url: url(names.s3), state: s3 },
      ],
    });
  }
  return {
    version: 1,
    scenario: { name: 'kill-and-resync', description: 'Kill s2 at 10 s, restart it at 25 s.', file: 'examples/kill-and-resync.yaml' },
    startedAt: '2026-12-02T01:00:00.000Z',
    durationS: 40,
    verdict: {
      ok: true,
      checks: [
        { name: 'fio verify', ok: true, detail: 'fio verified 31.9 MiB with crc32c: 0 errors' },
        { name: 'replica compare', ok: true, detail },
        { name: 'acknowledged-write history', ok: true, detail: '104233 acknowledged writes read back as written' },
      ],
    },
    samples,
    faults: [
      { t: 10, until: 25, action: 'kill', server: names.s2 },
      { t: 16, until: 20, action: 'blackhole', server: names.s3, detail: 'for 4 s' },
      { t: 30, until: 35, action: 'slow', server: names.s1, detail: 'delay 40 ms ± 10 ms' },
    ],
    servers: [names.s1, names.s2, names.s3].map((name) => ({ name, url: url(name) })),
    workload: { kind: 'fio', rw: 'randwrite', bs: 4096, iodepth: 16, size: 32 << 20, runtimeS: 35, verify: 'crc32c' },
    device: { servers: [names.s1, names.s2, names.s3], frontend: 'nbd', minInSync: 2, onNoQuorum: 'wait', replicaTimeoutS: 3, path: '/dev/nbd0' },
    fio: { errors: 0, readIops: 1750, writeIops: 2480, readBytes: 0, writeBytes: 33554432 },
  };
}

test('the report escapes every string from the run: a hostile name or detail stays text', () => {
  const hostile = '<script>alert(1)</script>"\'><img src=x onerror=alert(2)>&amp;';
  const html = renderReport(syntheticRun({ s1: 's1', s2: hostile, s3: 's3' }, hostile));
  assert.ok(!html.includes('<script'), 'a script tag came through');
  assert.ok(!html.includes('<img'), 'an img tag came through');
  assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&gt;&lt;img src=x onerror=alert(2)&gt;&amp;amp;'));
  assert.match(html, /Content-Security-Policy" content="default-src &#39;none&#39;/);
  const plain = renderReport(syntheticRun());
  assert.ok(!/\b(?:src|href)=|@import|url\((?!#)/.test(plain), 'the report must load nothing');
});

test('figures a runner could not measure (NaN, null, a missing time) leave gaps, never NaN in the drawing', () => {
  const run = syntheticRun();
  run.samples[3]!.t = Number.NaN;
  run.samples[5]!.readIops = Number.NaN;
  run.samples[6]!.p99Ms = null;
  run.samples[7]!.p50Ms = 0; // no point on a log scale
  run.samples[27]!.replicas[1]!.resyncPercent = Number.NaN;
  run.faults.push({ t: Number.NaN, action: 'clear', server: 's1' });
  run.durationS = Number.NaN;
  const html = renderReport(run);
  assert.ok(!html.includes('NaN'), 'NaN in the report');
  assert.equal((html.match(/<g class="fault-span">/g) ?? []).length, 9, 'the three placeable faults, on each chart');
});

test('a failed run says FAIL at the top and shows each failing check with its detail', () => {
  const run = syntheticRun();
  run.verdict = { ok: false, checks: [
    { name: 'fio verify', ok: true, detail: '0 errors' },
    { name: 'replica compare', ok: false, detail: 's2 differs from s1 at block 77 (offset 315392)' },
  ] };
  const html = renderReport(run);
  assert.match(html, /<div class="verdict fail" id="verdict"><span class="word">FAIL<\/span><span>1 of 2 checks passed/);
  assert.match(html, /<li class="fail"><span class="mark">✗ FAIL<\/span><strong>replica compare<\/strong><pre>s2 differs from s1 at block 77/);
  assert.ok(html.indexOf('FAIL') < html.indexOf('<svg'), 'the verdict comes before the charts');
});

test('chromium renders the report: three charts with drawn lines, replica lanes, faults, verdict, no console errors', async (t) => {
  if (!(await requireTool(t, 'chromium'))) return;
  const dir = tempDir(t, 'wsblk-lab-report-');
  const browser = await Browser.launch(t, dir);

  // The harness itself must see errors, or a clean result below would prove nothing.
  const broken = join(dir, 'broken.html');
  writeFileSync(broken, '<!DOCTYPE html><title>x</title><script>console.error("deliberate"); notAFunction();</script><img src="missing.png">');
  const brokenPage = await browser.open(pathToFileURL(broken).href);
  assert.equal(brokenPage.errors.length, 3, `the harness caught: ${JSON.stringify(brokenPage.errors)}`);
  assert.ok(brokenPage.errors.some((e) => e.includes('deliberate')));
  assert.ok(brokenPage.errors.some((e) => e.includes('notAFunction')));
  assert.ok(brokenPage.errors.some((e) => e.includes('ERR_FILE_NOT_FOUND')));

  const run = syntheticRun();
  const file = join(dir, 'report.html');
  writeFileSync(file, renderReport(run));
  const page = await browser.open(pathToFileURL(file).href);
  assert.deepEqual(page.errors, [], 'console errors while loading the report');
  const seen = await page.evaluate(`(() => {
    const charts = [...document.querySelectorAll('svg.chart')];
    return {
      title: document.title,
      verdict: document.getElementById('verdict')?.textContent,
      checks: [...document.querySelectorAll('.checks li')].map((li) => li.textContent),
      charts: charts.map((svg) => ({
        label: svg.getAttribute('aria-label'),
        width: svg.getBoundingClientRect().width,
        series: [...svg.querySelectorAll('path.series')].map((p) => ({
          name: p.dataset.series, points: (p.getAttribute('d').match(/[ML]/g) || []).length, length: p.getTotalLength(),
        })),
        faults: svg.querySelectorAll('g.fault-span rect').length,
        labels: [...svg.querySelectorAll('text.fault-label')].map((x) => x.textContent),
      })),
      states: [...new Set([...document.querySelectorAll('rect.state')].map((r) => r.dataset.state))].sort(),
      lanes: [...document.querySelectorAll('text.lane')].map((x) => x.textContent),
      progress: document.querySelectorAll('path.progress').length,
      scrollWidth: document.documentElement.scrollWidth,
      loaded: document.querySelectorAll('script, img, link, iframe, object').length,
    };
  })()`) as {
    title: string; verdict: string; checks: string[]; states: string[]; lanes: string[]; progress: number; scrollWidth: number; loaded: number;
    charts: { label: string; width: number; series: { name: string; points: number; length: number }[]; faults: number; labels: string[] }[];
  };
  assert.equal(seen.title, 'kill-and-resync: PASS · wsblk lab');
  assert.match(seen.verdict, /^PASS3 of 3 checks passed$/);
  assert.deepEqual(seen.checks, [
    '✓ PASSfio verifyfio verified 31.9 MiB with crc32c: 0 errors',
    '✓ PASSreplica comparecompared 16384 blocks of 4096 bytes',
    '✓ PASSacknowledged-write history104233 acknowledged writes read back as written',
  ]);
  assert.deepEqual(seen.charts.map((c) => c.label), ['I/O operations per second', 'Latency', 'Replica states']);
  const [iops, latency] = seen.charts;
  assert.deepEqual(iops!.series.map((s) => [s.name, s.points]), [['read', 40], ['write', 40]]);
  // t = 12 has no latency: each line breaks there, 39 points in two runs.
  assert.deepEqual(latency!.series.map((s) => [s.name, s.points]), [['p50', 39], ['p99', 39]]);
  for (const c of seen.charts) {
    for (const s of c.series) assert.ok(s.length > 500, `${c.label} ${s.name} is drawn (${s.length} px long)`);
    assert.equal(c.faults, 3, `${c.label} shades the three faults`);
    assert.deepEqual(c.labels, ['kill s2', 'blackhole s3', 'slow s1']);
    assert.ok(c.width >= 1100 && c.width <= 1240, `${c.label} fills the page at 1280 px (${c.width} px)`);
  }
  assert.deepEqual(seen.states, ['ejected', 'in-sync', 'resyncing', 'unreachable']);
  assert.deepEqual(seen.lanes, ['s1s1', 's2s2', 's3s3'], 'each lane: its name, and the name again as its tooltip');
  assert.equal(seen.progress, 1, 'the resync is drawn as progress');
  assert.ok(seen.scrollWidth <= 1280, `no horizontal scroll at 1280 px (${seen.scrollWidth})`);
  assert.equal(seen.loaded, 0, 'the report has nothing to load or run');

  const png = await page.screenshot();
  assert.deepEqual([...png.subarray(1, 4)].map((c) => String.fromCharCode(c)).join(''), 'PNG');
  assert.ok(png.readUInt32BE(16) === 1280 && png.readUInt32BE(20) > 900, 'a full-page screenshot, 1280 px wide');
  writeFileSync(join(dir, 'report.png'), png);
  // LAB_REPORT_OUT=DIR keeps the report and its screenshot for a person to look at.
  const keep = process.env.LAB_REPORT_OUT;
  if (keep) {
    mkdirSync(keep, { recursive: true });
    for (const f of ['report.html', 'report.png']) copyFileSync(join(dir, f), join(keep, f));
  }

  // A hostile server name and check detail render as text and run nothing.
  const hostile = '<img src=x onerror=console.error(1)>';
  const evil = join(dir, 'evil.html');
  writeFileSync(evil, renderReport(syntheticRun({ s1: 's1', s2: hostile, s3: 's3' }, `<script>console.error(2)</script>`)));
  const evilPage = await browser.open(pathToFileURL(evil).href);
  assert.deepEqual(evilPage.errors, []);
  const evilSeen = await evilPage.evaluate(`({
    lanes: [...document.querySelectorAll('text.lane title')].map((x) => x.textContent),
    detail: document.querySelectorAll('.checks pre')[1].textContent,
    loaded: document.querySelectorAll('script, img').length,
  })`);
  assert.deepEqual(evilSeen, { lanes: ['s1', hostile, 's3'], detail: '<script>console.error(2)</script>', loaded: 0 });

  // A run that stopped before its first sample still renders, with empty charts and no errors.
  const empty = syntheticRun();
  empty.samples = [];
  empty.faults = [];
  empty.verdict = { ok: false, checks: [{ name: 'fio verify', ok: false, detail: 'fio did not start: /dev/nbd0 is missing' }] };
  const emptyFile = join(dir, 'empty.html');
  writeFileSync(emptyFile, renderReport(empty));
  const emptyPage = await browser.open(pathToFileURL(emptyFile).href);
  assert.deepEqual(emptyPage.errors, []);
  assert.deepEqual(await emptyPage.evaluate(`({
    charts: document.querySelectorAll('svg.chart').length,
    verdict: document.getElementById('verdict').textContent,
    ticks: [...document.querySelectorAll('svg.chart')[0].querySelectorAll('text.tick')].map((x) => x.textContent).slice(-5),
  })`), { charts: 3, verdict: 'FAIL0 of 1 checks passed', ticks: ['0', '10', '20', '30', '40'] });
});
