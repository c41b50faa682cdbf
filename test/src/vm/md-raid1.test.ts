// Linux md raid1 over two wsblk ublk devices (test/vm/scenarios/md-raid1.sh in the guest): a
// member's server SIGKILLed under fio verify degrades the array without an error reaching fio,
// because the member's failfast requests fail at their deadline; --re-add resyncs from the
// bitmap, and md's check and `wsblk verify` find the members identical.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { runInVm, vmAvailable, vmPrepare } from '../../vm/vm.mjs';
import { requireTool } from '../support/procs.js';

const script = fileURLToPath(new URL('../../vm/scenarios/md-raid1.sh', import.meta.url));
const repo = fileURLToPath(new URL('../../../', import.meta.url));

test('mdadm raid1 (bitmap, failfast) over two ublk devices: a server killed, fio verify clean, --re-add resyncs', { timeout: 900_000 }, async (t) => {
  if (!(await requireTool(t, 'mdadm')) || !(await requireTool(t, 'fio'))) return;
  if (!(vmAvailable() || (await vmPrepare({ quiet: true })))) {
    if (process.env.CI === 'true') throw new Error('the VM harness could not be prepared (test/vm/prepare.sh)');
    t.skip('no VM harness here (run test/vm/prepare.sh)');
    return;
  }
  const r = await runInVm(['bash', script], { timeoutSec: 800, cwd: repo });
  const out = `${r.stdout}\n${r.stderr}`;
  for (const line of r.stdout.split('\n').filter((l) => /^(== |fio: |degraded after|resynced after|mismatch_cnt|wsblk verify|Bitmap :)/.test(l.trim()))) t.diagnostic(line);
  assert.notEqual(r.code, 124, `the guest timed out\n${out.slice(-4000)}`);
  assert.equal(r.code, 0, `md-raid1.sh failed (exit ${r.code}):\n${out.slice(-6000)}`);
  assert.match(r.stdout, /SCENARIO OK/);
  assert.match(r.stdout, /fio: error=0 /);
  assert.match(r.stdout, /mismatch_cnt=0/);
  const degraded = /degraded after (\d+) s/.exec(r.stdout);
  assert.ok(degraded && Number(degraded[1]) <= 30, `the array degraded within 30 s of the kill (failfast deadline 5 s): ${degraded?.[0]}`);
});
