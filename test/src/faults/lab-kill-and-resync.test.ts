// `wsblk lab run examples/kill-and-resync.yaml` end to end with real processes: green, its
// results.json holds the run (a sample a second, the kill, s2 out and back in sync), and its
// report renders in headless chromium with the plot drawn and no console errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Browser } from '../support/browser.js';
import { EXAMPLES, assertOutAndBack, labRun, sampleGaps } from '../support/lab-run.js';
import { requireTool, tempDir } from '../support/procs.js';

test('lab run kill-and-resync: PASS; s2 killed at 10 s is out, restarted at 25 s, resynced; every sample and the report are there', { timeout: 180_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const r = await labRun(t, join(EXAMPLES, 'kill-and-resync.yaml'));
  const { run } = r;
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr.slice(-2000)}`);
  assert.match(r.stdout, new RegExp(`^${r.folder}\n`), 'the folder first');
  assert.match(r.stdout, /kill-and-resync\.yaml: PASS\n$/);
  // Under a pipe the progress comes as a line every 5 s; nothing else is on stderr.
  const progress = r.stderr.split('\n').filter((l) => l !== '');
  assert.ok(progress.length >= 7 && progress.length <= 25 && progress.every((l) => /^lab: +\d+\/40 s {2}\S+/.test(l)), r.stderr);
  t.diagnostic(r.stdout.trim());

  assert.equal(run.verdict.ok, true, JSON.stringify(run.verdict, null, 2));
  assert.deepEqual(run.verdict.checks.map((c) => [c.name, c.ok]), [['fio verify', true], ['replica compare', true], ['acknowledged-write history', true]]);
  assert.equal(run.fio!.errors, 0);
  assert.ok(run.fio!.writeBytes > 8 << 20, `fio wrote (${run.fio!.writeBytes} bytes)`);
  assert.match(run.verdict.checks[2]!.detail, /^[1-9]\d* writes acknowledged, 0 failed; [1-9]\d* blocks read back, 0 mismatches/);

  // A sample every second through the run.
  assert.ok(run.samples.length >= 38, `${run.samples.length} samples`);
  assert.deepEqual(sampleGaps(run, 1), [], 'no interval without a sample');
  const busy = run.samples.filter((s) => s.t >= 2 && s.t < 35);
  assert.ok(busy.filter((s) => s.writeIops > 0).length >= busy.length * 0.8, 'writes go on through the kill (a stall while s2 is ejected)');
  assert.ok(busy.some((s) => s.p50Ms !== null && s.p99Ms !== null && s.p99Ms >= s.p50Ms), 'latency sampled');

  // The kill, with its extent, and what the replica set made of it.
  assertOutAndBack(run, { action: 'kill', server: 's2', atS: 10, untilS: 25 }, ['s1', 's3']);
  assert.ok(r.reportExists, 'report.html written');

  // The report as a person sees it.
  if (!(await requireTool(t, 'chromium'))) return;
  const browser = await Browser.launch(t, tempDir(t, 'wsblk-lab-chromium-'));
  const page = await browser.open(pathToFileURL(join(r.folder, 'report.html')).href);
  assert.deepEqual(page.errors, [], 'console errors while loading the report');
  const seen = await page.evaluate(`(() => ({
    verdict: document.getElementById('verdict')?.textContent,
    charts: [...document.querySelectorAll('svg.chart')].map((svg) => ({
      series: [...svg.querySelectorAll('path.series')].map((p) => p.getTotalLength()),
      faults: [...svg.querySelectorAll('text.fault-label')].map((x) => x.textContent),
    })),
    states: [...new Set([...document.querySelectorAll('rect.state')].map((r) => r.dataset.state))].sort(),
  }))()`) as { verdict: string; charts: { series: number[]; faults: string[] }[]; states: string[] };
  assert.equal(seen.verdict, 'PASS3 of 3 checks passed');
  assert.equal(seen.charts.length, 3, 'IOPS, latency and replica states');
  for (const c of seen.charts.slice(0, 2)) {
    assert.equal(c.series.length, 2);
    for (const len of c.series) assert.ok(len > 300, `a drawn line (${len} px)`);
  }
  for (const c of seen.charts) assert.deepEqual(c.faults, ['kill s2']);
  assert.ok(seen.states.includes('in-sync') && seen.states.length >= 2, `replica lanes drawn: ${seen.states.join(', ')}`);
});
