// `wsblk lab run examples/slow-replica.yaml`: s1 slowed by 40 ms is waited for (latency rises
// to the delay) and never ejected; green.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { EXAMPLES, labRun, sampleGaps, stateRuns, statesOf } from '../support/lab-run.js';
import { requireTool } from '../support/procs.js';

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

test('lab run slow-replica: PASS; p50 rises to the delay while s1 is slow, s1 stays in sync', { timeout: 180_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const { run, code, stdout, stderr } = await labRun(t, join(EXAMPLES, 'slow-replica.yaml'), ['--quiet']);
  assert.equal(code, 0, `${stdout}\n${stderr.slice(-2000)}`);
  t.diagnostic(stdout.trim());
  assert.equal(run.verdict.ok, true, JSON.stringify(run.verdict, null, 2));
  assert.deepEqual(sampleGaps(run, 1), []);
  assert.deepEqual(run.faults.map((f) => [f.action, f.server, f.detail]), [['slow', 's1', 'delay 40 ms ± 10 ms']]);
  const slow = run.faults[0]!;
  assert.ok(Math.abs(slow.t - 6) < 1 && Math.abs(slow.until! - 18) < 1, `slow from ${slow.t} s to ${slow.until} s`);

  const p50 = (from: number, to: number) => median(run.samples.filter((s) => s.t > from && s.t <= to && s.p50Ms !== null).map((s) => s.p50Ms!));
  const before = p50(1, 6);
  const during = p50(8, 18);
  t.diagnostic(`p50 before ${before} ms, while slow ${during} ms`);
  assert.ok(during >= 15, `writes wait for s1: p50 ${during} ms while it is slowed by 40 ms`);
  assert.ok(before < during / 2, `p50 before the delay (${before} ms) is well under it`);
  for (const name of ['s1', 's2', 's3']) assert.deepEqual(stateRuns(statesOf(run, name)), ['in-sync'], `${name} never ejected`);
});
