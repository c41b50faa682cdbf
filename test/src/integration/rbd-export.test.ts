// An RBD image exported by a real `wsblk serve` on a Ceph micro cluster (one monitor, one memstore
// OSD), used through the NBD frontend (`wsblk connect --nbd`) by fio and nbdcopy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Op, encodeSetRecord, isAllZero, type SetRecord } from '@wsblk/shared';
import { cephCluster } from '../support/ceph-cluster.js';
import { startNbdDaemon } from '../support/nbd-daemon.js';
import { fio, requireTool, sleep, tempDir, wsblk } from '../support/procs.js';
import { RawClient } from '../support/raw-client.js';
import { serve } from '../support/serve-process.js';
import { nbdcopyInAndOut, runOk } from '../interop/nbd-harness.js';

const MiB = 1 << 20;

test('fio --verify=crc32c through an RBD export via the NBD frontend', { timeout: 180_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const ceph = await cephCluster(t);
  if (!ceph) return;
  t.diagnostic(`micro cluster started in ${ceph.startSeconds.toFixed(1)} s`);
  await ceph.rbd(['create', '--size', '128M', 'rbd/fio']);
  const dir = tempDir(t);
  const s = await serve(t, ['--export', `d=rbd:rbd/fio,conf=${ceph.conf}`]);
  const { uri } = await startNbdDaemon(t, s.url('d'), join(dir, 'd.sock'), join(dir, 'run'));
  const r = await fio([
    '--name=rbd-verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=32',
    '--size=48M', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0',
  ]);
  assert.equal(r.code, 0, `fio failed:\n${r.raw.slice(-3000)}\nserver:\n${s.proc.output()}`);
  assert.equal(r.errors, 0);
  const job = r.json.jobs[0];
  assert.equal(job.write.io_bytes, 48 * MiB);
  assert.equal(job.read.io_bytes, 48 * MiB, 'every block was read back and verified');
  t.diagnostic(`randwrite ${Math.round(job.write.iops)} IOPS; verify read ${Math.round(job.read.iops)} IOPS`);
  // The data is in Ceph, not in the gateway: rbd's own export reads the same bytes.
  const img = join(dir, 'img');
  await ceph.rbd(['export', 'rbd/fio', img]);
  const through = join(dir, 'through');
  await runOk('nbdcopy', [uri, through]);
  assert.ok(readFileSync(img).equals(readFileSync(through)), 'rbd export and the NBD device differ');
});

test('nbdcopy copies 64 MiB in and back out of an RBD export byte for byte; discard reads back zeroes', { timeout: 180_000 }, async (t) => {
  if (!(await requireTool(t, 'nbdcopy'))) return;
  const ceph = await cephCluster(t);
  if (!ceph) return;
  await ceph.rbd(['create', '--size', '96M', 'rbd/copy']);
  const dir = tempDir(t);
  const s = await serve(t, ['--export', `d=rbd:rbd/copy,conf=${ceph.conf}`]);
  const { uri } = await startNbdDaemon(t, s.url('d'), join(dir, 'd.sock'), join(dir, 'run'));
  const { data, copied } = await nbdcopyInAndOut(uri, dir, 64 * MiB);
  assert.equal(copied.length, 96 * MiB);
  assert.ok(copied.subarray(0, data.length).equals(data), 'copy differs from the source');
  assert.ok(isAllZero(copied.subarray(data.length)), 'bytes after the copy are not zero');

  // DISCARD (rbd_aio_discard) of a range that starts and ends inside RBD objects reads back as zeroes.
  const c = await RawClient.connect(s.url('d'));
  t.after(() => c.terminate());
  await c.hello({ clientId: 'discard-check', steal: true });
  const at = 5 * MiB + 512;
  const len = 2 * MiB - 1024;
  const done = await c.roundTrip([{ seq: 1, op: Op.Discard, flags: 0, offset: at, length: len }]);
  assert.equal(done.get(1)!.status, 0);
  const got = await c.roundTrip([{ seq: 2, op: Op.Read, flags: 0, offset: 4 * MiB, length: 4 * MiB }]);
  assert.equal(got.get(2)!.status, 0);
  const view = got.get(2)!.data!;
  const rel = at - 4 * MiB;
  assert.ok(view.subarray(0, rel).equals(data.subarray(4 * MiB, at)), 'data before the discard is kept');
  assert.ok(isAllZero(view.subarray(rel, rel + len)), 'the discarded range reads as zeroes');
  assert.ok(view.subarray(rel + len).equals(data.subarray(at + len, 8 * MiB)), 'data after the discard is kept');
});

test('an image grown with rbd resize shows its new size to a newly connected client', { timeout: 120_000 }, async (t) => {
  const ceph = await cephCluster(t);
  if (!ceph) return;
  await ceph.rbd(['create', '--size', '64M', 'rbd/grow']);
  const s = await serve(t, ['--export', `d=rbd:rbd/grow,conf=${ceph.conf}`]);
  const before = await RawClient.connect(s.url('d'));
  t.after(() => before.terminate());
  assert.equal((await before.hello({ clientId: 'before', readOnly: true })).size, 64 * MiB);
  await ceph.rbd(['resize', '--size', '96M', 'rbd/grow']);
  // The gateway re-reads the size every 500 ms: a client connecting after that sees the new one.
  let size = 0;
  for (const deadline = Date.now() + 10_000; size !== 96 * MiB && Date.now() < deadline; await sleep(200)) {
    const c = await RawClient.connect(s.url('d'));
    size = (await c.hello({ clientId: 'after', readOnly: true })).size;
    c.terminate();
  }
  assert.equal(size, 96 * MiB, 'a new client sees the grown image');
  // The wire protocol has no size-change message: a connected client keeps the size of its
  // welcome, but the grown range already answers (the server checks against the size of the moment).
  const tail = await before.roundTrip([{ seq: 1, op: Op.Read, flags: 0, offset: 80 * MiB, length: 4096 }]);
  assert.equal(tail.get(1)!.status, 0);
});

test('an image without exclusive-lock is refused read-write with the fix named, served ,ro; the replica-set record is image metadata', { timeout: 120_000 }, async (t) => {
  const ceph = await cephCluster(t);
  if (!ceph) return;
  await ceph.rbd(['create', '--size', '16M', '--image-feature', 'layering', 'rbd/plain']);
  const r = await wsblk(['serve', '--listen', '127.0.0.1:0', '--export', `d=rbd:rbd/plain,conf=${ceph.conf}`]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /rbd:rbd\/plain: the image needs the exclusive-lock feature \(rbd feature enable rbd\/plain exclusive-lock\), or export it ,ro/);
  const ro = await serve(t, ['--export', `d=rbd:rbd/plain,conf=${ceph.conf},ro`]);
  const c = await RawClient.connect(ro.url('d'));
  t.after(() => c.terminate());
  const w = await c.hello({ clientId: 'reader' });
  assert.deepEqual([w.readOnly, w.size], [true, 16 * MiB]);

  await ceph.rbd(['create', '--size', '16M', 'rbd/meta']);
  const s = await serve(t, ['--export', `d=rbd:rbd/meta,conf=${ceph.conf}`]);
  const m = await RawClient.connect(s.url('d'));
  t.after(() => m.terminate());
  await m.hello({ clientId: 'writer' });
  const none = (await m.roundTrip([{ seq: 1, op: Op.MetaRead, flags: 0, offset: 0, length: 0 }])).get(1)!;
  assert.deepEqual([none.status, none.data], [0, undefined]);
  const rec: SetRecord = { setId: 'set1', epoch: 2, inSync: ['ws://a:1/d', 'ws://b:1/d'] };
  const payload = encodeSetRecord(rec);
  assert.equal((await m.roundTrip([{ seq: 2, op: Op.MetaWrite, flags: 0, offset: 0, length: payload.length, payload }])).get(2)!.status, 0);
  const back = (await m.roundTrip([{ seq: 3, op: Op.MetaRead, flags: 0, offset: 0, length: 0 }])).get(3)!;
  assert.deepEqual(JSON.parse(back.data!.toString()), rec);
  const stored = await ceph.rbd(['image-meta', 'get', 'rbd/meta', 'wsblk.replica-record']);
  assert.deepEqual(JSON.parse(Buffer.from(stored.trim(), 'base64').toString()), rec, 'kept as image metadata, base64');
});
