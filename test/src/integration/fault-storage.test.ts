// Storage faults set at run time on a real `wsblk serve`, seen by a real client (RemoteDisk in
// this process): a delay measured, an errno received, a bad range failing only its range, a
// pause holding then releasing I/O, and a crash losing exactly the writes never made durable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Errno, FLAG_FUA, Op } from '@wsblk/shared';
import type { RemoteDisk } from '@wsblk/client';
import { faultClient as disk, serveWithFaults, timed } from '../support/fault-admin.js';
import { io, pattern, sleep } from '../support/server.js';

const K4 = 4096;

test('delay: reads are held ms +- jitter, writes are not; cleared, reads are quick again', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:4M']);
  const d = await disk(t, s.url('disk0'), 'c1');
  const read = () => io(d, { op: Op.Read, offset: 0, length: K4 });
  const [, before] = await timed(read);
  const set = await s.set({ kind: 'delay', export: 'disk0', ms: 200, jitter: 20, ops: ['read'] });
  assert.equal(set.name, 'delay-1', 'a fault without a name gets one');
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const [r, ms] = await timed(read);
    assert.equal(r.status, 0);
    times.push(ms);
  }
  const [w, wms] = await timed(() => io(d, { op: Op.Write, offset: 0, length: K4, payload: pattern(K4, 1) }));
  assert.equal(w.status, 0);
  t.diagnostic(`read before ${before.toFixed(1)} ms, with delay ${times.map((x) => x.toFixed(0)).join('/')} ms, write ${wms.toFixed(1)} ms`);
  for (const ms of times) assert.ok(ms >= 175 && ms < 1000, `read took ${ms} ms`);
  assert.ok(wms < 150, `the write is not delayed (${wms} ms)`);
  const list = await s.api('GET', '/faults');
  assert.equal(list.json[0].hits, 3, 'three reads were delayed');
  await s.clear('delay-1');
  const [, after] = await timed(read);
  assert.ok(after < 150, `after clear ${after} ms`);
  assert.match(s.proc.output(), /info  faults: fault set by 127\.0\.0\.1:\d+.*: delay-1 delay export=disk0 ops=read ms=200 jitter=20/);
  assert.match(s.proc.output(), /fault cleared by 127\.0\.0\.1:\d+.*: delay-1/);
});

test('error: the client gets the errno; limited to one client, others are untouched; a probability fails about that share', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:4M', '--export', 'disk1=memory:4M']);
  const victim = await disk(t, s.url('disk0'), 'victim');
  const other = await disk(t, s.url('disk1'), 'other');
  await s.set({ name: 'full', kind: 'error', errno: 'ENOSPC', ops: ['write'], client: 'victim' });
  const w = (d: RemoteDisk, fill: number) => io(d, { op: Op.Write, offset: 0, length: K4, payload: pattern(K4, fill) });
  assert.equal((await w(victim, 1)).status, Errno.ENOSPC);
  assert.equal((await io(victim, { op: Op.Read, offset: 0, length: K4 })).status, 0, 'reads are not in ops');
  assert.equal((await w(other, 2)).status, 0, 'another client writes');
  await s.set({ name: 'full', kind: 'error', errno: 'EIO', probability: 0.5 });
  const statuses = await Promise.all(Array.from({ length: 200 }, (_, i) => io(other, { op: Op.Read, offset: (i % 64) * K4, length: K4 })));
  const failed = statuses.filter((r) => r.status === Errno.EIO).length;
  t.diagnostic(`probability 0.5: ${failed}/200 failed with EIO`);
  assert.ok(failed > 60 && failed < 140, `${failed} of 200`);
  assert.ok(statuses.every((r) => r.status === 0 || r.status === Errno.EIO));
  await s.clear();
  assert.equal((await w(victim, 3)).status, 0);
});

test('bad range: reads and writes touching the range fail, their neighbours do not', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:4M']);
  const d = await disk(t, s.url('disk0'), 'c1');
  const base = 1 << 20;
  await s.set({ kind: 'bad-range', export: 'disk0', offset: base, length: 65536 });
  const read = (offset: number, length = K4) => io(d, { op: Op.Read, offset, length }).then((r) => r.status);
  assert.equal(await read(base - K4), 0, 'the block before');
  assert.equal(await read(base), Errno.EIO, 'the first block');
  assert.equal(await read(base + 65536 - K4), Errno.EIO, 'the last block');
  assert.equal(await read(base - K4, 2 * K4), Errno.EIO, 'a read across the start');
  assert.equal(await read(base + 65536), 0, 'the block after');
  const write = (offset: number) => io(d, { op: Op.Write, offset, length: K4, payload: pattern(K4, 5) }).then((r) => r.status);
  assert.equal(await write(base + 8192), Errno.EIO);
  assert.equal(await write(base + 65536), 0);
  assert.equal((await io(d, { op: Op.Flush, offset: 0, length: 0 })).status, 0, 'a flush has no range');
});

test('pause: set returns once in-flight requests drained; new I/O is held until the pause is cleared', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:4M']);
  const d = await disk(t, s.url('disk0'), 'c1');
  await s.set({ name: 'slow', kind: 'delay', ms: 400, ops: ['write'] });
  let w1Done = 0;
  const w1 = io(d, { op: Op.Write, offset: 0, length: K4, payload: pattern(K4, 1) }).then((r) => { w1Done = performance.now(); return r; });
  await sleep(50);
  const [, pauseMs] = await timed(() => s.set({ name: 'hold', kind: 'pause', export: 'disk0' }));
  const pausedAt = performance.now();
  assert.ok(w1Done > 0 && w1Done <= pausedAt, 'the write in flight finished before the pause call returned');
  assert.ok(pauseMs >= 250, `the pause call waited for it (${pauseMs.toFixed(0)} ms)`);
  assert.equal((await w1).status, 0);
  await s.clear('slow');
  let w2Done = false;
  const w2 = io(d, { op: Op.Write, offset: K4, length: K4, payload: pattern(K4, 2) }).then((r) => { w2Done = true; return r; });
  let r1Done = false;
  const r1 = io(d, { op: Op.Read, offset: 0, length: K4 }).then((r) => { r1Done = true; return r; });
  await sleep(400);
  assert.equal(w2Done || r1Done, false, 'I/O is held while paused');
  await s.clear('hold');
  const [r2, ms] = await timed(() => w2);
  assert.equal(r2.status, 0);
  assert.ok(ms < 300, `released at once (${ms} ms)`);
  assert.ok((await r1).data!.equals(pattern(K4, 1)));
  assert.match(s.proc.output(), /fault hold: paused, in-flight requests drained/);
});

test('crash: the writes never flushed are lost, FUA writes and flushed writes are kept', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:4M']);
  const d = await disk(t, s.url('disk0'), 'c1');
  const write = (block: number, fill: number, flags = 0) => io(d, { op: Op.Write, offset: block * K4, length: K4, flags, payload: pattern(K4, fill) });
  const read = async (block: number) => (await io(d, { op: Op.Read, offset: block * K4, length: K4 })).data!;
  const zero = Buffer.alloc(K4);
  // Durable before the fault: block 0 holds 100, block 5 holds 105.
  await write(0, 100);
  await write(5, 105);
  await s.set({ name: 'power', kind: 'crash', export: 'disk0' });
  assert.equal((await write(1, 2, FLAG_FUA)).status, 0, 'B: FUA');
  assert.equal((await write(2, 3)).status, 0, 'C: then flushed');
  assert.equal((await io(d, { op: Op.Flush, offset: 0, length: 0 })).status, 0);
  assert.equal((await write(0, 1)).status, 0, 'A: over durable data, never flushed');
  assert.equal((await write(3, 4)).status, 0, 'D: after the flush, never flushed');
  assert.equal((await io(d, { op: Op.WriteZeroes, offset: 5 * K4, length: K4 })).status, 0, 'E: zeroes over 105, never flushed');
  assert.equal((await write(6, 7)).status, 0, 'F: never flushed, then overwritten by a FUA write');
  assert.equal((await write(6, 8, FLAG_FUA)).status, 0, 'F: FUA');
  // Before the crash the client reads its own writes.
  assert.ok((await read(0)).equals(pattern(K4, 1)));
  assert.ok((await read(3)).equals(pattern(K4, 4)));
  assert.ok((await read(5)).equals(zero));
  const crash = await s.api('POST', '/faults/power/crash');
  assert.equal(crash.status, 200);
  assert.deepEqual(crash.json, { writes: 3, bytes: 3 * K4 }, 'A, D and E were lost (F was superseded by its FUA write)');
  assert.ok((await read(0)).equals(pattern(K4, 100)), 'A lost: the durable data is back');
  assert.ok((await read(1)).equals(pattern(K4, 2)), 'B kept (FUA)');
  assert.ok((await read(2)).equals(pattern(K4, 3)), 'C kept (flushed)');
  assert.ok((await read(3)).equals(zero), 'D lost');
  assert.ok((await read(5)).equals(pattern(K4, 105)), 'E lost');
  assert.ok((await read(6)).equals(pattern(K4, 8)), 'F: the FUA write');
  assert.match(s.proc.output(), /fault power crashed by .*: export 'disk0' lost 3 unflushed writes \(12288 bytes\)/);
  // Cleared, the crash fault keeps what is in memory: it goes to the backend.
  assert.equal((await write(4, 9)).status, 0);
  await s.clear('power');
  await sleep(100);
  assert.equal((await s.api('POST', '/faults', { name: 'power', kind: 'crash', export: 'disk0' })).status, 200);
  assert.deepEqual((await s.api('POST', '/faults/power/crash')).json, { writes: 0, bytes: 0 });
  assert.ok((await read(4)).equals(pattern(K4, 9)), 'a write made before the clear was kept');
});
