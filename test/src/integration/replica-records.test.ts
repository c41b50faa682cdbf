// The server side of replica sets: the membership record next to an export's data (META_READ,
// META_WRITE, kept across restarts, never going back), the epoch fence on writes, and CHECKSUM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { CHECKSUM_CHUNK, Errno, Op, encodeSetRecord, type SetRecord } from '@wsblk/shared';
import { FileBackend, MemoryBackend } from '@wsblk/server';
import { RawClient } from '../support/raw-client.js';
import { pattern, startServer, tempDir } from '../support/server.js';

const metaWrite = (seq: number, rec: SetRecord) => {
  const payload = encodeSetRecord(rec);
  return { seq, op: Op.MetaWrite, flags: 0, offset: 0, length: payload.length, payload };
};
const metaRead = (seq: number) => ({ seq, op: Op.MetaRead, flags: 0, offset: 0, length: 0 });
const write = (seq: number, offset: number, data: Buffer) => ({ seq, op: Op.Write, flags: 0, offset, length: data.length, payload: data });

async function one(c: RawClient, req: Parameters<RawClient['roundTrip']>[0][number]) {
  return (await c.roundTrip([req])).get(req.seq)!;
}

test('a file export keeps its membership record beside its data, across a server restart', async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.cleanup());
  const path = tmp.path('d.img');
  let s = await startServer({ d: await FileBackend.open(path, { size: 4 << 20 }) });
  let c = await RawClient.connect(s.url('d'));
  await c.hello();
  const none = await one(c, metaRead(1));
  assert.equal(none.status, 0);
  assert.equal(none.data, undefined, 'no record yet: an empty reply');
  const rec: SetRecord = { setId: 'set1', epoch: 3, inSync: ['ws://a:1/d', 'ws://b:1/d'] };
  assert.equal((await one(c, metaWrite(2, rec))).status, 0);
  assert.deepEqual(JSON.parse(readFileSync(`${path}.wsblk-meta`, 'utf8')), rec, 'the record is a JSON file beside the data');
  c.terminate();
  await s.close();
  s = await startServer({ d: await FileBackend.open(path) });
  t.after(() => s.close());
  c = await RawClient.connect(s.url('d'));
  await c.hello();
  const back = await one(c, metaRead(1));
  assert.equal(back.status, 0);
  assert.deepEqual(JSON.parse(back.data!.toString()), rec);
  assert.equal(existsSync(`${path}.wsblk-meta.${process.pid}.tmp`), false, 'no temporary file left');
  c.terminate();
});

test('a record never goes back: an older epoch, or the same epoch with other members, is ESTALE; another set replaces it', async (t) => {
  const s = await startServer({ d: new MemoryBackend(1 << 20) });
  t.after(() => s.close());
  const c = await RawClient.connect(s.url('d'));
  await c.hello();
  assert.equal((await one(c, metaWrite(1, { setId: 'S', epoch: 5, inSync: ['a', 'b'] }))).status, 0);
  assert.equal((await one(c, metaWrite(2, { setId: 'S', epoch: 4, inSync: ['a', 'b'] }))).status, Errno.ESTALE);
  assert.equal((await one(c, metaWrite(3, { setId: 'S', epoch: 5, inSync: ['a'] }))).status, Errno.ESTALE);
  assert.equal((await one(c, metaWrite(4, { setId: 'S', epoch: 5, inSync: ['a', 'b'] }))).status, 0, 'the same record again (a replay)');
  assert.equal((await one(c, metaWrite(5, { setId: 'T', epoch: 1, inSync: ['c'] }))).status, 0);
  assert.deepEqual(JSON.parse((await one(c, metaRead(6))).data!.toString()), { setId: 'T', epoch: 1, inSync: ['c'] });
  const bad = Buffer.from('{"setId":"S"}');
  assert.equal((await one(c, { seq: 7, op: Op.MetaWrite, flags: 0, offset: 0, length: bad.length, payload: bad })).status, Errno.EINVAL);
  c.terminate();
});

test('writes from a client of an older epoch are refused with ESTALE once a newer epoch is stored', async (t) => {
  const s = await startServer({ d: new MemoryBackend(1 << 20) });
  t.after(() => s.close());
  const a = await RawClient.connect(s.url('d'));
  await a.hello({ setId: 'S', setEpoch: 1 });
  assert.equal((await one(a, metaWrite(1, { setId: 'S', epoch: 1, inSync: ['x', 'y'] }))).status, 0);
  assert.equal((await one(a, write(2, 0, pattern(4096, 1)))).status, 0);
  a.ws.close(1000);
  await a.closed;
  // A newer client of the set stores epoch 2 (an ejection it made).
  const b = await RawClient.connect(s.url('d'));
  await b.hello({ setId: 'S', setEpoch: 1 });
  assert.equal((await one(b, metaWrite(1, { setId: 'S', epoch: 2, inSync: ['x'] }))).status, 0);
  assert.equal((await one(b, write(2, 0, pattern(4096, 2)))).status, 0, 'its own META_WRITE moved it to epoch 2');
  b.ws.close(1000);
  await b.closed;
  // The older client comes back with epoch 1: its writes are fenced; reads still work.
  const old = await RawClient.connect(s.url('d'));
  await old.hello({ setId: 'S', setEpoch: 1 });
  assert.equal((await one(old, write(1, 0, pattern(4096, 3)))).status, Errno.ESTALE);
  const r = await one(old, { seq: 2, op: Op.Read, flags: 0, offset: 0, length: 4096 });
  assert.ok(r.data!.equals(pattern(4096, 2)), 'the fenced write did not land');
  // A plain client (no set) is not fenced by the record: one writer per export guards it.
  old.ws.close(1000);
  await old.closed;
  const plain = await RawClient.connect(s.url('d'));
  await plain.hello();
  assert.equal((await one(plain, write(1, 0, pattern(4096, 4)))).status, 0);
  plain.terminate();
});

test('CHECKSUM gives sha256 (first 16 bytes) of each 64 KiB of the range; past the end is EINVAL', async (t) => {
  const size = 4 << 20;
  const s = await startServer({ d: new MemoryBackend(size) });
  t.after(() => s.close());
  const c = await RawClient.connect(s.url('d'));
  await c.hello();
  const data = pattern(3 * CHECKSUM_CHUNK + 4096, 9);
  assert.equal((await one(c, write(1, 65536, data))).status, 0);
  const from = 32768;
  const length = 5 * CHECKSUM_CHUNK + 100;
  const rep = await one(c, { seq: 2, op: Op.Checksum, flags: 0, offset: from, length });
  assert.equal(rep.status, 0);
  const disk = Buffer.alloc(size);
  data.copy(disk, 65536);
  const want = [];
  for (let at = from; at < from + length; at += CHECKSUM_CHUNK) {
    want.push(createHash('sha256').update(disk.subarray(at, Math.min(from + length, at + CHECKSUM_CHUNK))).digest().subarray(0, 16));
  }
  assert.ok(rep.data!.equals(Buffer.concat(want)));
  assert.equal((await one(c, { seq: 3, op: Op.Checksum, flags: 0, offset: size - 4096, length: 8192 })).status, Errno.EINVAL);
  c.terminate();
});
