// Two `wsblk serve` gateways on one RBD image of a Ceph micro cluster. RBD's exclusive lock is
// the writer lock across gateways: a second writer is refused, --steal blocklists the old
// gateway before it breaks the lock, so a stale gateway's late write cannot land.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CloseCode, Op } from '@wsblk/shared';
import { cephCluster } from '../support/ceph-cluster.js';
import { sleep, tempDir } from '../support/procs.js';
import { RawClient } from '../support/raw-client.js';
import { serve } from '../support/serve-process.js';
import { pattern } from '../support/server.js';

const BLOCK = 8 * 4096;
const write = (seq: number, fill: number) => ({ seq, op: Op.Write, flags: 0, offset: BLOCK, length: 4096, payload: pattern(4096, fill) });
const read = (seq: number) => ({ seq, op: Op.Read, flags: 0, offset: BLOCK, length: 4096 });

/** A new 64M image behind two gateways, and client alpha writing through the first (null: skipped, no Ceph). */
async function twoGateways(t: TestContext, image: string) {
  const ceph = await cephCluster(t);
  if (!ceph) return null;
  await ceph.rbd(['create', '--size', '64M', image]);
  const spec = `d=rbd:${image},conf=${ceph.conf}`;
  const g1 = await serve(t, ['--export', spec]);
  const g2 = await serve(t, ['--export', spec]);
  const a = await RawClient.connect(g1.url('d'));
  t.after(() => a.terminate());
  await a.hello({ clientId: 'alpha' });
  assert.equal((await a.roundTrip([write(1, 1)])).get(1)!.status, 0);
  return { ceph, spec, g1, g2, a };
}

test('a second writer through another gateway is refused; --steal blocklists the first gateway and takes over', { timeout: 120_000 }, async (t) => {
  const set = await twoGateways(t, 'rbd/lock');
  if (!set) return;
  const { ceph, spec, g2, a } = set;

  const b = await RawClient.connect(g2.url('d'));
  b.sendHello({ clientId: 'beta' });
  const refused = await b.closedWithin(30_000);
  assert.equal(refused.code, CloseCode.WriterBusy);
  assert.match(refused.reason, /locked by another gateway .*; --steal takes over$/);
  // librbd does not hand the lock over to another client's write either (the gateway took it
  // explicitly): a plain librbd writer gets EROFS, and the holder keeps writing.
  await assert.rejects(ceph.rbd(['bench', '--io-type', 'write', '--io-total', '4096', '--io-size', '4096', 'rbd/lock']), /Read-only file system/);
  assert.equal((await a.roundTrip([write(2, 1)])).get(2)!.status, 0, 'the holder still writes');
  // A reader through the second gateway is let in (no lock needed) and sees the writer's data.
  const r = await RawClient.connect(g2.url('d'));
  await r.hello({ clientId: 'reader', readOnly: true });
  assert.ok((await r.roundTrip([read(1)])).get(1)!.data!.equals(pattern(4096, 1)));
  r.terminate();

  const thief = await RawClient.connect(g2.url('d'));
  t.after(() => thief.terminate());
  await thief.hello({ clientId: 'thief', steal: true, secret: 't'.repeat(64) });
  assert.equal((await thief.roundTrip([write(1, 2)])).get(1)!.status, 0);
  const blocklist = await ceph.ceph(['osd', 'blocklist', 'ls']);
  assert.match(blocklist, /127\.0\.0\.1:0\/\d+/, 'the first gateway is blocklisted');
  // The first gateway's writer is fenced by Ceph, not by its own server: its write fails.
  const late = (await a.roundTrip([write(4, 3)])).get(4)!;
  assert.notEqual(late.status, 0, 'a blocklisted gateway cannot write');
  assert.ok((await thief.roundTrip([read(2)])).get(2)!.data!.equals(pattern(4096, 2)), 'the thief\'s data stays');

  // The thief closes cleanly: its gateway lets the lock go, and a third gateway's writer gets it.
  thief.ws.close(1000);
  await thief.closed;
  const g3 = await serve(t, ['--export', spec]);
  const c = await RawClient.connect(g3.url('d'));
  t.after(() => c.terminate());
  await c.hello({ clientId: 'gamma' });
  assert.equal((await c.roundTrip([write(1, 4)])).get(1)!.status, 0);
});

test('stale gateway: frozen with a write in flight, stolen from, resumed: its write is refused and the newer data stays', { timeout: 120_000 }, async (t) => {
  const ceph = await cephCluster(t);
  if (!ceph) return;
  await ceph.rbd(['create', '--size', '64M', 'rbd/stale']);
  const spec = `d=rbd:rbd/stale,conf=${ceph.conf}`;
  const dir = tempDir(t);
  // Gateway 1 holds its first write for 3 s before librbd sees it: it is in flight when frozen.
  const faults = join(dir, 'faults.json');
  writeFileSync(faults, JSON.stringify([{ kind: 'delay', export: 'd', ms: 3000, ops: ['write'], count: 1 }]));
  const g1 = await serve(t, ['--export', spec, '--faults', faults]);
  const g2 = await serve(t, ['--export', spec]);
  const a = await RawClient.connect(g1.url('d'));
  t.after(() => a.terminate());
  await a.hello({ clientId: 'alpha' });
  a.sendRequests([write(1, 0xaa)]);
  await sleep(300);
  process.kill(g1.pid, 'SIGSTOP');
  let resumed = false;
  t.after(() => { if (!resumed) process.kill(g1.pid, 'SIGCONT'); });

  const b = await RawClient.connect(g2.url('d'));
  t.after(() => b.terminate());
  await b.hello({ clientId: 'beta', steal: true }, 30_000);
  assert.equal((await b.roundTrip([write(1, 0xbb)])).get(1)!.status, 0);
  await sleep(3000); // past gateway 1's delay: its write goes to librbd as soon as it runs again
  process.kill(g1.pid, 'SIGCONT');
  resumed = true;

  const stale = (await a.replies([1], 30_000)).get(1)!;
  assert.notEqual(stale.status, 0, 'the stale gateway\'s write is refused');
  // librbd answered EBLOCKLISTED (ESHUTDOWN, 108): the OSDs refuse the blocklisted gateway's client.
  const why = /WRITE 32768\+4096 failed: rbd_aio_write: (E108|ESHUTDOWN)/;
  for (const deadline = Date.now() + 5000; !why.test(g1.proc.output()) && Date.now() < deadline;) await sleep(50);
  assert.match(g1.proc.output(), why, 'gateway 1 was refused by Ceph as blocklisted');
  assert.ok((await b.roundTrip([read(2)])).get(2)!.data!.equals(pattern(4096, 0xbb)), 'the newer data stays');
  const img = join(dir, 'img');
  await ceph.rbd(['export', 'rbd/stale', img]);
  assert.ok(readFileSync(img).subarray(BLOCK, BLOCK + 4096).equals(pattern(4096, 0xbb)), 'Ceph holds the newer data');
});

test('a blocklisted gateway connects to Ceph again for its next writer: no restart, and the gateway it took over from is fenced in turn', { timeout: 120_000 }, async (t) => {
  const set = await twoGateways(t, 'rbd/back');
  if (!set) return;
  const { ceph, g1, g2, a } = set;

  const thief = await RawClient.connect(g2.url('d'));
  t.after(() => thief.terminate());
  await thief.hello({ clientId: 'thief', steal: true }, 30_000);
  assert.equal((await thief.roundTrip([write(1, 2)])).get(1)!.status, 0);
  assert.notEqual((await a.roundTrip([write(2, 3)])).get(2)!.status, 0, 'gateway 1, blocklisted, cannot write');

  // Before, gateway 1 refused every writer from here on (its client stays blocklisted) until restarted.
  const back = await RawClient.connect(g1.url('d'));
  t.after(() => back.terminate());
  await back.hello({ clientId: 'back', steal: true }, 30_000);
  assert.match(g1.proc.output(), /rbd:rbd\/back: Ceph blocklisted this gateway's client .*; connected again as a new client/);
  assert.equal((await back.roundTrip([write(1, 4)])).get(1)!.status, 0, 'gateway 1 writes again');
  assert.ok((await back.roundTrip([read(2)])).get(2)!.data!.equals(pattern(4096, 4)));
  assert.notEqual((await thief.roundTrip([write(3, 5)])).get(3)!.status, 0, 'gateway 2, blocklisted by the steal back, cannot write');
  const img = join(tempDir(t), 'img');
  await ceph.rbd(['export', 'rbd/back', img]);
  assert.ok(readFileSync(img).subarray(BLOCK, BLOCK + 4096).equals(pattern(4096, 4)), 'Ceph holds the last writer\'s data');
});
