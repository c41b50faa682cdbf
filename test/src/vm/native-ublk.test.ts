// The native addon alone against the real ublk_drv (no daemon, no server): control error paths,
// timeouts and in-process I/O, run by test/vm/scenarios/native-control.mjs as root in the guest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { runInVm, vmAvailable, vmPrepare } from '../../vm/vm.mjs';

const script = fileURLToPath(new URL('../../vm/scenarios/native-control.mjs', import.meta.url));
const repo = fileURLToPath(new URL('../../../', import.meta.url));

test('ublk control commands fail with their documented errors and time out without stalling the loop', { timeout: 600_000 }, async (t) => {
  if (!(vmAvailable() || (await vmPrepare({ quiet: true })))) {
    if (process.env.CI === 'true') throw new Error('the VM harness could not be prepared (test/vm/prepare.sh)');
    t.skip('no VM harness here (run test/vm/prepare.sh)');
    return;
  }
  const r = await runInVm(['node', script], { timeoutSec: 500, cwd: repo });
  const out = `${r.stdout}\n${r.stderr}`;
  for (const line of r.stdout.split('\n').filter((l) => /^(ok|FAIL)/.test(l))) t.diagnostic(line);
  assert.notEqual(r.code, 124, `the guest timed out\n${out.slice(-4000)}`);
  assert.equal(r.code, 0, `native-control.mjs failed (exit ${r.code}):\n${out.slice(-6000)}`);
  assert.match(r.stdout, /SCENARIO OK/);
  assert.doesNotMatch(r.stdout, /^FAIL/m);
});
