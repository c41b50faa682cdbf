// `wsblk lab run examples/slow-replica.yaml`: s1 slowed by 40 ms is waited for (latency rises
// to the delay) and never ejected; green.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { EXAMPLES, labRun, sampleGaps, stateRuns, statesOf } from '../support/lab-run.js';
import { requireTool } from '../support/procs.js';

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

test('lab run slow-replica: PASS; p99 rises to the delay while s1 is slow, s1 stays in sync', { timeout: 180_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const { run, code, stdout, stderr } = await labRun(t, join(EXAMPLES, 'slow-replica.yaml'), ['--quiet']);
  assert.equal(code, 0, `${stdout}\n${stderr.slice(-2000)}`);
  t.diagnostic(stdout.trim());
  assert.equal(run.verdict.ok, true, JSON.stringify(run.verdict, null, 2));
  assert.deepEqual(sampleGaps(run, 1), []);
  assert.deepEqual(run.faults.map((f) => [f.action, f.server, f.detail]), [['slow', 's1', 'delay 40 ms ± 10 ms']]);
  const slow = run.faults[0]!;
  assert.ok(Math.abs(slow.t - 6) < 1 && Math.abs(slow.until! - 18) < 1, `slow from ${slow.t} s to ${slow.until} s`);

  // fio reads back what it wrote as it goes (verify_backlog): half of the device's requests are
  // reads, answered by any in-sync replica (fast), so the median sits between reads and writes
  // and may land on either side; p99 is a write's, and rises to the delay.
  const pct = (key: 'p50Ms' | 'p99Ms', from: number, to: number) => median(run.samples.filter((s) => s.t > from && s.t <= to && s[key] !== null).map((s) => s[key]!));
  const before = pct('p99Ms', 1, 6);
  const during = pct('p99Ms', 8, 18);
  t.diagnostic(`p99 before ${before} ms, while slow ${during} ms; p50 ${pct('p50Ms', 1, 6)} ms, ${pct('p50Ms', 8, 18)} ms`);
  assert.ok(during >= 30, `writes wait for s1: p99 ${during} ms while it is slowed by 40 ms`);
  assert.ok(before < during * 0.75, `p99 before the delay (${before} ms) is well under it`);
  for (const name of ['s1', 's2', 's3']) assert.deepEqual(stateRuns(statesOf(run, name)), ['in-sync'], `${name} never ejected`);
});
