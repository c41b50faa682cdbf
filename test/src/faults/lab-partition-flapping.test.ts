// `wsblk lab run examples/partition-flapping.yaml`: s3 cut off three times (twice a partition:
// nftables drops as root, else the transport black hole; once a black hole) is ejected and
// resynced each time; the run is green and says how it partitioned.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { EXAMPLES, labRun, sampleGaps, stateRuns, statesOf } from '../support/lab-run.js';
import { requireTool } from '../support/procs.js';

test('lab run partition-flapping: PASS; s3 ejected and back in sync after each cut; partitions made with nftables as root (else black holes), as recorded', { timeout: 180_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const { run, code, stdout, stderr } = await labRun(t, join(EXAMPLES, 'partition-flapping.yaml'), ['--quiet']);
  assert.equal(code, 0, `${stdout}\n${stderr.slice(-2000)}`);
  assert.equal(stderr, '', '--quiet: no progress line');
  t.diagnostic(stdout.trim());
  assert.equal(run.verdict.ok, true, JSON.stringify(run.verdict, null, 2));
  assert.equal(run.fio!.errors, 0);
  assert.deepEqual(sampleGaps(run, 1), []);

  assert.deepEqual(run.faults.map((f) => [f.action, f.server]), [['partition', 's3'], ['partition', 's3'], ['blackhole', 's3']]);
  for (const [i, f] of run.faults.entries()) {
    assert.ok(Math.abs(f.t - (4 + 8 * i)) < 1 && Math.abs(f.until! - f.t - 4) < 1, `cut ${i + 1}: ${f.t} s to ${f.until} s`);
  }
  const real = process.getuid?.() === 0 && spawnSync('sh', ['-c', 'command -v nft']).status === 0;
  for (const f of run.faults.slice(0, 2)) {
    assert.match(f.detail!, real ? /^nftables drop of 127\.0\.0\.1:\d+, both ways/ : /as a transport black hole/);
  }

  // Each cut ejects s3 (2 s replica timeout) and it comes back; s1 and s2 stay in sync.
  const s3 = statesOf(run, 's3');
  const outDuring = run.faults.map((f) => run.samples.some((s, i) => s.t > f.t && s.t <= f.until! + 1 && s3[i] !== 'in-sync'));
  assert.deepEqual(outDuring, [true, true, true], `s3 over time: ${stateRuns(s3).join(' > ')}`);
  assert.equal(s3[s3.length - 1], 'in-sync');
  assert.ok(stateRuns(s3).filter((s) => s === 'in-sync').length >= 4, `back in sync after every cut: ${stateRuns(s3).join(' > ')}`);
  for (const other of ['s1', 's2']) assert.deepEqual(stateRuns(statesOf(run, other)), ['in-sync']);
});
