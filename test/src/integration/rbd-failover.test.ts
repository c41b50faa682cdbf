// A device failing over between two `wsblk serve` gateways of one RBD image: the gateway it
// moves to takes the image's exclusive lock back from the one it left (blocklisting it) when the
// lock's writer record has the device's secret; any other writer is refused, as without failover.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, Op } from '@wsblk/shared';
import { cephCluster } from '../support/ceph-cluster.js';
import { requireTool, sleep, tempDir } from '../support/procs.js';
import { RawClient } from '../support/raw-client.js';
import { assertVerified, fioPattern, fioVerify, startSetDaemon, waitSet } from '../support/replica-procs.js';
import { listDevice, waitGateway, type GatewayView } from '../support/gateway-procs.js';
import { serve, type ServeProcess } from '../support/serve-process.js';
import { pattern } from '../support/server.js';

const MiB = 1 << 20;
const BLOCK = 8 * 4096;
const write = (seq: number, fill: number) => ({ seq, op: Op.Write, flags: 0, offset: BLOCK, length: 4096, payload: pattern(4096, fill) });

/** The Ceph client address a gateway took the image's lock as (its log says so). */
async function lockAddress(g: ServeProcess): Promise<string> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(50)) {
    const m = /writer lock taken as (\S+)/.exec(g.proc.output());
    if (m) return m[1]!;
  }
  throw new Error(`the gateway never took the lock:\n${g.proc.output()}`);
}

test('gateway 1 SIGKILLed under fio verify: the device takes its lock back through gateway 2, blocklisting gateway 1, with 0 errors', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const ceph = await cephCluster(t);
  if (!ceph) return;
  t.diagnostic(`micro cluster started in ${ceph.startSeconds} s`);
  await ceph.rbd(['create', '--size', '64M', 'rbd/fo']);
  const spec = `d=rbd:rbd/fo,conf=${ceph.conf}`;
  const g1 = await serve(t, ['--export', spec]);
  const g2 = await serve(t, ['--export', spec]);
  const [u1, u2] = [g1.url('d'), g2.url('d')];
  const d = await startSetDaemon(t, tempDir(t), [u1], ['--failover', u2]);
  assert.equal((await listDevice(d)).gateway, u1, 'on gateway 1');
  const g1Address = await lockAddress(g1);

  // Throttled: ~4 s of writes, so that gateway 1 dies with writes in flight.
  const run = fioVerify(d.uri, '16M', ['--rate=,4m']);
  await sleep(1500);
  const killedAt = Date.now();
  process.kill(g1.pid, 'SIGKILL');
  await waitGateway(d, u2, 'the device is on gateway 2', 20_000);
  const failoverMs = Date.now() - killedAt;
  t.diagnostic(`on gateway 2 ${failoverMs} ms after gateway 1 was killed (list --json polled every 200 ms)`);
  assert.ok(failoverMs < 10_000, `failover took ${failoverMs} ms (Ceph's watch timeout is ~30 s: the lock was not taken back)`);
  const r = await run;
  t.diagnostic(`fio done ${Date.now() - killedAt} ms after the kill; write ${r.json.jobs[0].write.runtime} ms, read ${r.json.jobs[0].read.runtime} ms`);
  assertVerified(r, 16 * MiB, () => `${d.proc.output().slice(-3000)}\ngateway 2:\n${g2.proc.output().slice(-3000)}`);

  assert.match(g2.proc.output(), new RegExp(`takeover of 'd' by the same device .* from gateway ${g1Address.replace(/[.]/g, '\\.')}; old gateway blocklisted`));
  const t0 = Date.now();
  const blocklist = await ceph.ceph(['osd', 'blocklist', 'ls']);
  t.diagnostic(`blocklist ls ${Date.now() - t0} ms`);
  assert.ok(blocklist.includes(g1Address), `gateway 1 (${g1Address}) is blocklisted:\n${blocklist}`);
  assert.equal((await listDevice(d)).failovers, 1);
});

test('a reclaim needs the device\'s secret: another client\'s is refused and the holder keeps writing; the same secret takes the lock back', { timeout: 120_000 }, async (t) => {
  const ceph = await cephCluster(t);
  if (!ceph) return;
  await ceph.rbd(['create', '--size', '64M', 'rbd/reclaim']);
  const spec = `d=rbd:rbd/reclaim,conf=${ceph.conf}`;
  const g1 = await serve(t, ['--export', spec]);
  const g2 = await serve(t, ['--export', spec]);
  const secret = 'a'.repeat(64);
  const a = await RawClient.connect(g1.url('d'));
  t.after(() => a.terminate());
  await a.hello({ clientId: 'alpha', secret });
  assert.equal((await a.roundTrip([write(1, 1)])).get(1)!.status, 0);

  for (const hello of [{ clientId: 'beta', secret: 'b'.repeat(64), reclaim: true }, { clientId: 'alpha', reclaim: true }]) {
    const b = await RawClient.connect(g2.url('d'));
    b.sendHello(hello);
    const refused = await b.closedWithin(30_000);
    assert.equal(refused.code, CloseCode.WriterBusy, `${JSON.stringify(hello)} is refused`);
    assert.match(refused.reason, /locked by another gateway/);
  }
  assert.equal((await a.roundTrip([write(2, 2)])).get(2)!.status, 0, 'the holder still writes: gateway 1 was not fenced');
  assert.doesNotMatch(g2.proc.output(), /takeover/);

  // The device itself (its secret), as after a failover: gateway 1 is fenced, gateway 2 writes.
  const again = await RawClient.connect(g2.url('d'));
  t.after(() => again.terminate());
  await again.hello({ clientId: 'alpha', secret, reclaim: true }, 30_000);
  assert.equal((await again.roundTrip([write(1, 3)])).get(1)!.status, 0);
  assert.match(g2.proc.output(), /takeover of 'd' by the same device \(client alpha\) from gateway \S+; old gateway blocklisted/);
  assert.notEqual((await a.roundTrip([write(3, 4)])).get(3)!.status, 0, 'gateway 1, blocklisted, cannot write');
});

test('the device\'s own gateway SIGKILLed and restarted at once: the device takes its lock back from the dead instance, without waiting out Ceph\'s watch', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const ceph = await cephCluster(t);
  if (!ceph) return;
  await ceph.rbd(['create', '--size', '64M', 'rbd/restart']);
  const spec = ['--export', `d=rbd:rbd/restart,conf=${ceph.conf}`];
  const g1 = await serve(t, spec);
  const d = await startSetDaemon(t, tempDir(t), [g1.url('d')]);
  const dead = await lockAddress(g1);
  const before = await listDevice(d);
  const killedAt = Date.now();
  process.kill(g1.pid, 'SIGKILL');
  await g1.proc.exited;
  const again = await serve(t, spec, {}, g1.port);
  await waitSet<GatewayView>(d.runDir, (v) => v.state === 'connected' && v.reconnects > before.reconnects, 'the device is back', 20_000, d.proc);
  const backMs = Date.now() - killedAt;
  t.diagnostic(`back on the restarted gateway ${backMs} ms after the kill`);
  assert.ok(backMs < 10_000, `it took ${backMs} ms`);
  assert.match(again.proc.output(), new RegExp(`takeover of 'd' by the same device .* from gateway ${dead.replace(/[.]/g, '\\.')}; old gateway blocklisted`));
  const w = await fioPattern(d.uri, '4M', '0x5eed1e55');
  assert.equal(w.errors, 0, w.raw.slice(-2000));
});
