// The ublk path against the real kernel driver: each scenario boots Debian's 6.12 kernel under
// qemu (test/vm) and runs a script of test/vm/scenarios as root in the guest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { runInVm, vmAvailable, vmPrepare } from '../../vm/vm.mjs';
import type { RunInVmResult } from '../../vm/vm.d.mts';

const scenarios = fileURLToPath(new URL('../../vm/scenarios/', import.meta.url));
const repo = fileURLToPath(new URL('../../../', import.meta.url));

let ready: Promise<boolean> | undefined;
async function vmReady(t: import('node:test').TestContext): Promise<boolean> {
  ready ??= (async () => vmAvailable() || (await vmPrepare({ quiet: true })))();
  if (await ready) return true;
  if (process.env.CI === 'true') throw new Error('the VM harness could not be prepared (test/vm/prepare.sh)');
  t.skip('no VM harness here (run test/vm/prepare.sh)');
  return false;
}

async function scenario(t: import('node:test').TestContext, name: string, timeoutSec: number): Promise<RunInVmResult> {
  const r: RunInVmResult = await runInVm(['bash', scenarios + name], { timeoutSec, cwd: repo });
  const out = `${r.stdout}\n${r.stderr}`;
  for (const line of out.split('\n').filter((l) => /^(== |fio: |files: |recovered by|\[\d+\])/.test(l))) t.diagnostic(line);
  if (r.kernelWarnings) t.diagnostic(`kernel warnings:\n${r.dmesg.split('\n').filter((l) => /WARNING|BUG|Oops|hung/.test(l)).slice(0, 10).join('\n')}`);
  assert.notEqual(r.code, 124, `${name}: the guest timed out after ${timeoutSec} s\n${out.slice(-4000)}`);
  assert.equal(r.code, 0, `${name} failed (exit ${r.code}):\n${out.slice(-6000)}`);
  assert.match(r.stdout, /SCENARIO OK/);
  return r;
}

test('a filesystem on /dev/ublkbN keeps its files across disconnect and connect (mkfs.ext4, mount, checksums)', { timeout: 900_000 }, async (t) => {
  if (!(await vmReady(t))) return;
  await scenario(t, 'filesystem.sh', 800);
});

test('fio verify passes while the daemon is SIGKILLed three times (supervisor twice, wsblk recover once)', { timeout: 900_000 }, async (t) => {
  if (!(await vmReady(t))) return;
  const r = await scenario(t, 'daemon-kill.sh', 850);
  assert.match(r.stdout, /fio: error=0 /);
});

test('fio verify passes while the server is SIGKILLed and restarted twice', { timeout: 900_000 }, async (t) => {
  if (!(await vmReady(t))) return;
  const r = await scenario(t, 'server-kill.sh', 800);
  assert.match(r.stdout, /fio: error=0 /);
});

test('disconnect while fio runs: fio gets errors, nothing hangs, no device is left behind', { timeout: 900_000 }, async (t) => {
  if (!(await vmReady(t))) return;
  await scenario(t, 'disconnect-under-io.sh', 600);
});

test('bad options give a clear error, the documented exit code and leave no device behind', { timeout: 900_000 }, async (t) => {
  if (!(await vmReady(t))) return;
  await scenario(t, 'bad-options.sh', 600);
});

test('the NBD export behind the kernel\'s nbd-client: fio verify (4k-1M) while the server is SIGKILLed once', { timeout: 900_000 }, async (t) => {
  if (!(await vmReady(t))) return;
  const r = await scenario(t, 'nbd-kernel.sh', 600);
  assert.match(r.stdout, /fio: error=0 /);
});

test('a ublk device over two replicas: ext4 and fio verify while the daemon and then one server are SIGKILLed; the replica resyncs and both files end identical', { timeout: 900_000 }, async (t) => {
  if (!(await vmReady(t))) return;
  const r = await scenario(t, 'replica-ublk.sh', 800);
  assert.match(r.stdout, /fio: error=0 /);
  assert.match(r.stdout, /replicas: identical/);
});
