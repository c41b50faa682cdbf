// Client failover between gateways of one store (connect URL --failover URL2 ...), with real
// processes: `wsblk serve` processes exporting the same file stand in for gateways in front of
// one RBD image. Two servers over one file have no fence between them (each fences only its own
// sessions): for real gateways RBD's exclusive lock is that fence. Here a gateway is dead (or
// not yet used) whenever another one takes over, so no two of them write at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { askControl, controlPath } from '@wsblk/client';
import { requireTool, sleep, wsblk } from '../support/procs.js';
import { assertVerified, fioPattern, fioVerify, startSetDaemon, waitSet } from '../support/replica-procs.js';
import { failoverArgs, listDevice, sameFileGateways, waitGateway, type GatewayView } from '../support/gateway-procs.js';
import { promtoolCheck, series } from '../support/promtool.js';
import { RawClient } from '../support/raw-client.js';
import { TcpProxy } from '../support/server.js';

const MiB = 1 << 20;

test('gateway 1 SIGKILLed under fio verify: the device fails over to gateway 2 with 0 errors, and the data is in the shared store', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const g = await sameFileGateways(t, 2);
  const d = await startSetDaemon(t, g.dir, [g.urls[0]!], failoverArgs(g.urls));
  const before = await listDevice(d);
  assert.equal(before.gateway, g.urls[0], 'on the first gateway');
  assert.deepEqual(before.failover, [g.urls[1]]);
  const run = fioVerify(d.uri, '32M', ['--rate=,4m']);
  await sleep(2000);
  await g.servers[0]!.kill();
  const after = await waitGateway(d, g.urls[1]!, 'the device is on gateway 2', 20_000);
  assert.equal(after.failovers, 1);
  const r = await run;
  assertVerified(r, 32 * MiB, () => d.proc.output().slice(-3000));
  t.diagnostic(d.proc.output().split('\n').filter((l) => /failed over|replaying/.test(l)).join('\n'));
  assert.match(d.proc.output(), new RegExp(`failed over from ${g.urls[0]} to ${g.urls[1]} \\(`), 'the failover is logged, with why');
  // Read back through gateway 1, restarted on the same file, by a second (read-only) device: the
  // data went to the store, not to gateway 2.
  await g.servers[0]!.restart();
  const reader = await startSetDaemon(t, g.dir, [g.urls[0]!], ['--read-only'], 'reader');
  const check = await fioVerify(reader.uri, '32M', ['--verify_only=1']);
  assert.equal(check.code, 0, check.raw.slice(-2000));
  assert.equal(check.errors, 0, 'the read-back through gateway 1 verifies');
  assert.equal(check.json.jobs[0].read.io_bytes, 32 * MiB, 'every block was read back');
});

test('three gateways, the first killed: the device goes to the second, not the third; the metrics say so', { timeout: 60_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const g = await sameFileGateways(t, 3);
  const d = await startSetDaemon(t, g.dir, [g.urls[0]!], failoverArgs(g.urls));
  const killedAt = Date.now();
  await g.servers[0]!.kill();
  const v = await waitGateway(d, g.urls[1]!, 'the device is on gateway 2');
  t.diagnostic(`on gateway 2 within ${Date.now() - killedAt} ms of the kill (list --json polled every 200 ms)`);
  const w = await fioPattern(d.uri, '8M', '0x1f2e3d4c');
  assert.equal(w.errors, 0, w.raw.slice(-2000));
  assert.equal((await listDevice(d)).gateway, g.urls[1], 'still on gateway 2 after I/O');
  assert.doesNotMatch(g.servers[2]!.proc.output(), /session/, 'gateway 3 never saw the device');
  assert.match(g.servers[1]!.proc.output(), /new writer session/);
  const { metrics } = await askControl<{ metrics: string }>(controlPath(d.runDir, v.id), { cmd: 'metrics' });
  await promtoolCheck(t, metrics);
  assert.equal(series(metrics, 'wsblk_client_failovers_total', { device: v.id }), 1);
  assert.deepEqual(g.urls.map((u) => series(metrics, 'wsblk_client_gateway', { device: v.id, gateway: u })), [0, 1, 0]);
  const text = await wsblk(['list'], { WSBLK_RUN_DIR: d.runDir });
  assert.match(text.stdout, new RegExp(`gateway ${g.urls[1]}  \\(current\\)`), text.stdout);
});

test('every gateway down, then one comes back: I/O waits, then resumes there with 0 errors', { timeout: 60_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const g = await sameFileGateways(t, 2);
  const d = await startSetDaemon(t, g.dir, [g.urls[0]!], failoverArgs(g.urls));
  await Promise.all(g.servers.map((s) => s.kill()));
  await waitSetState(d.runDir, 'reconnecting');
  const t0 = Date.now();
  let doneAt = 0;
  const run = fioPattern(d.uri, '8M', '0x600dcafe').then((r) => { doneAt = Date.now(); return r; });
  await sleep(3000);
  const back = Date.now();
  await g.servers[1]!.restart();
  const w = await run;
  const waited = doneAt - t0;
  assert.equal(w.code, 0, w.raw.slice(-2000));
  assert.equal(w.errors, 0, 'no I/O error while every gateway was down');
  assert.ok(doneAt > back, `the I/O waited for a gateway (fio ended ${waited} ms after it started)`);
  t.diagnostic(`fio finished ${waited} ms after it started, ${back - t0} ms of it with no gateway`);
  assert.equal((await listDevice(d)).gateway, g.urls[1]);
  const check = await fioPattern(d.uri, '8M', '0x600dcafe', true);
  assert.equal(check.errors, 0, check.raw.slice(-2000));
});

test('the first gateway down at connect: the device starts on the second', { timeout: 60_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const g = await sameFileGateways(t, 2);
  await g.servers[0]!.kill();
  const d = await startSetDaemon(t, g.dir, [g.urls[0]!], failoverArgs(g.urls));
  const v = await listDevice(d);
  assert.equal(v.gateway, g.urls[1]);
  assert.equal(v.failovers, 1);
  const w = await fioPattern(d.uri, '4M', '0x2468ace0');
  assert.equal(w.errors, 0, w.raw.slice(-2000));
});

test('a device on gateway 2 whose connection drops resumes its session there, though gateway 1 is back (no fail-back)', { timeout: 60_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const g = await sameFileGateways(t, 2);
  const proxy = await TcpProxy.start(g.servers[1]!.port);
  t.after(() => proxy.stop());
  const via = proxy.url('d');
  const d = await startSetDaemon(t, g.dir, [g.urls[0]!], ['--failover', via]);
  await g.servers[0]!.kill();
  const on2 = await waitGateway(d, via, 'the device is on gateway 2');
  await g.servers[0]!.restart();
  proxy.dropAll();
  const again = await waitSet<GatewayView>(d.runDir, (v) => v.state === 'connected' && v.reconnects > on2.reconnects, 'the device reconnected', 20_000, d.proc);
  assert.equal(again.gateway, via, 'it stayed on gateway 2');
  assert.equal(again.sessionId, on2.sessionId, 'and resumed its session there');
  assert.equal(again.failovers, 1, 'no second failover');
  assert.doesNotMatch(g.servers[0]!.proc.output(), /session/, 'the restarted gateway 1 was not used');
  const w = await fioPattern(d.uri, '4M', '0x13579bdf');
  assert.equal(w.errors, 0, w.raw.slice(-2000));
});

test('another writer on gateway 2 refuses the device after gateway 1 died: it goes on to gateway 3, not stopping', { timeout: 60_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const g = await sameFileGateways(t, 3);
  const d = await startSetDaemon(t, g.dir, [g.urls[0]!], failoverArgs(g.urls));
  const other = await RawClient.connect(g.urls[1]!);
  t.after(() => other.terminate());
  await other.hello({ clientId: 'other-writer', secret: 'f'.repeat(64) });
  await g.servers[0]!.kill();
  const v = await waitGateway(d, g.urls[2]!, 'the device is on gateway 3');
  assert.equal(v.failovers, 1);
  assert.match(g.servers[1]!.proc.output(), /closing: writer is other-writer/, 'gateway 2 refused the device (WriterBusy)');
  const w = await fioPattern(d.uri, '4M', '0x0badf00d');
  assert.equal(w.errors, 0, w.raw.slice(-2000));
});

test('a round in which the only other gateway refuses the device as a second writer stops it', { timeout: 60_000 }, async (t) => {
  const g = await sameFileGateways(t, 2);
  const d = await startSetDaemon(t, g.dir, [g.urls[0]!], failoverArgs(g.urls));
  const other = await RawClient.connect(g.urls[1]!);
  t.after(() => other.terminate());
  await other.hello({ clientId: 'other-writer', secret: 'f'.repeat(64) });
  await g.servers[0]!.kill();
  const code = await Promise.race([d.proc.exited, sleep(20_000).then(() => 'still running')]);
  assert.equal(code, 3, `the daemon stops (exit 3):\n${d.proc.output()}`);
  assert.match(d.proc.output(), /another writer holds the export \(writer is other-writer/);
});

async function waitSetState(runDir: string, state: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while ((await listDevice({ runDir })).state !== state) {
    assert.ok(Date.now() < deadline, `the device did not become ${state}`);
    await sleep(100);
  }
}
