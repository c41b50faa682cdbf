import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Op, bufferPool } from '@wsblk/shared';
import { InflightTable, ownPayload, type InflightEntry } from '@wsblk/client';

function entry(seq: number, bytes: number, since = seq): InflightEntry {
  return { seq, req: { op: Op.Write, offset: seq * 4096, length: bytes, flags: 0 }, cb: () => {}, bytes, sent: false, since };
}

function take(t: InflightTable): number[] {
  const out: InflightEntry[] = [];
  t.takeSendable(out);
  return out.map((e) => e.seq);
}

test('takeSendable yields accepted requests in the order they were added and marks them sent', () => {
  const t = new InflightTable(1 << 20);
  const es = [1, 2, 3, 4].map((s) => entry(s, 4096));
  for (const e of es) t.add(e);
  assert.deepEqual(take(t), [1, 2, 3, 4]);
  assert.ok(es.every((e) => e.sent));
  assert.equal(t.bytesInFlight, 4 * 4096);
  assert.equal(t.size, 4);
  assert.deepEqual(take(t), [], 'nothing is yielded twice');
});

test('takeSendable stops at the byte budget and goes on as requests complete', () => {
  const t = new InflightTable(10_000);
  for (let s = 1; s <= 5; s++) t.add(entry(s, 4000));
  assert.deepEqual(take(t), [1, 2], 'a third 4000-byte request would pass 10000');
  assert.equal(t.bytesInFlight, 8000);
  t.complete(1);
  assert.equal(t.bytesInFlight, 4000);
  assert.deepEqual(take(t), [3]);
  t.complete(2);
  t.complete(3);
  assert.deepEqual(take(t), [4, 5]);
  assert.equal(t.bytesInFlight, 8000);
});

test('takeSendable keeps order: a small request does not overtake a big one waiting for budget', () => {
  const t = new InflightTable(10_000);
  t.add(entry(1, 8000));
  t.add(entry(2, 4000));
  t.add(entry(3, 100));
  assert.deepEqual(take(t), [1]);
});

test('one request larger than the whole budget goes when nothing else is in flight', () => {
  const t = new InflightTable(4096);
  t.add(entry(1, 1000));
  t.add(entry(2, 1 << 20));
  t.add(entry(3, 1000));
  assert.deepEqual(take(t), [1], 'the oversize request waits while anything is in flight');
  t.complete(1);
  assert.deepEqual(take(t), [2], 'alone, it goes');
  assert.equal(t.bytesInFlight, 1 << 20);
  assert.deepEqual(take(t), [], 'and nothing goes beside it');
  t.complete(2);
  assert.deepEqual(take(t), [3]);
});

test('requests of zero bytes (flush, discard) pass a full budget', () => {
  const t = new InflightTable(4096);
  t.add(entry(1, 4096));
  t.add(entry(2, 0));
  assert.deepEqual(take(t), [1, 2]);
});

test('complete() removes a request and returns it once; unknown sequences return undefined', () => {
  const t = new InflightTable(1 << 20);
  const e = entry(7, 512);
  t.add(e);
  take(t);
  assert.equal(t.complete(7), e);
  assert.equal(t.complete(7), undefined);
  assert.equal(t.complete(99), undefined);
  assert.equal(t.size, 0);
  assert.equal(t.bytesInFlight, 0);
});

test('a request completed while still waiting (timed out) is never sent', () => {
  const t = new InflightTable(4096);
  t.add(entry(1, 4096));
  t.add(entry(2, 4096));
  t.add(entry(3, 4096));
  assert.deepEqual(take(t), [1]);
  t.complete(2);
  t.complete(1);
  assert.deepEqual(take(t), [3]);
  assert.equal(t.bytesInFlight, 4096);
});

test('requeueAll puts every uncompleted request back, sent or waiting, in sequence order', () => {
  const t = new InflightTable(3 * 4096);
  const es = [1, 2, 3, 4, 5, 6].map((s) => entry(s, 4096));
  for (const e of es) t.add(e);
  assert.deepEqual(take(t), [1, 2, 3]);
  t.complete(2);
  t.requeueAll();
  assert.equal(t.bytesInFlight, 0, 'nothing is on the (new) wire');
  assert.ok([1, 3, 4, 5, 6].every((s) => !es[s - 1]!.sent));
  assert.deepEqual(take(t), [1, 3, 4], 'replay starts with the oldest, within the budget');
  t.complete(1);
  t.complete(3);
  t.complete(4);
  assert.deepEqual(take(t), [5, 6]);
});

test('a completed request is never replayed, however often the connection drops', () => {
  const t = new InflightTable(1 << 20);
  for (let s = 1; s <= 4; s++) t.add(entry(s, 512));
  take(t);
  t.complete(3);
  t.requeueAll();
  assert.deepEqual(take(t), [1, 2, 4]);
  t.complete(1);
  t.requeueAll();
  t.requeueAll();
  assert.deepEqual(take(t), [2, 4]);
  t.complete(2);
  t.complete(4);
  t.requeueAll();
  assert.deepEqual(take(t), []);
  assert.equal(t.size, 0);
});

test('requests added after a requeue go after the replayed ones', () => {
  const t = new InflightTable(1 << 20);
  t.add(entry(1, 512));
  t.add(entry(2, 512));
  take(t);
  t.requeueAll();
  t.add(entry(3, 512));
  assert.deepEqual(take(t), [1, 2, 3]);
});

test('the waiting queue stays correct across its compaction', () => {
  const t = new InflightTable(1 << 30);
  let seq = 0;
  for (let round = 0; round < 5; round++) {
    const batch: number[] = [];
    for (let i = 0; i < 1500; i++) { t.add(entry(++seq, 1)); batch.push(seq); }
    assert.deepEqual(take(t), batch);
    for (const s of batch) t.complete(s);
  }
  t.add(entry(++seq, 1));
  assert.deepEqual(take(t), [seq]);
});

test('olderThan returns the requests accepted before the cutoff, oldest first', () => {
  const t = new InflightTable(1 << 20);
  t.add(entry(1, 1, 100));
  t.add(entry(2, 1, 200));
  t.add(entry(3, 1, 300));
  assert.deepEqual(t.olderThan(250).map((e) => e.seq), [1, 2]);
  assert.deepEqual(t.olderThan(100).map((e) => e.seq), []);
  assert.deepEqual(t.olderThan(1000).map((e) => e.seq), [1, 2, 3]);
  t.complete(1);
  assert.deepEqual(t.olderThan(250).map((e) => e.seq), [2]);
  assert.equal(t.size, 2, 'olderThan does not remove');
});

test('drainAll removes and returns everything', () => {
  const t = new InflightTable(1 << 20);
  for (let s = 1; s <= 3; s++) t.add(entry(s, 10));
  take(t);
  t.add(entry(4, 10));
  assert.deepEqual(t.drainAll().map((e) => e.seq), [1, 2, 3, 4]);
  assert.equal(t.size, 0);
  assert.equal(t.bytesInFlight, 0);
  assert.deepEqual(take(t), []);
});

test('a WRITE payload is the table\'s own: a copy of a caller\'s buffer, which the caller may reuse once the request leaves', () => {
  const t = new InflightTable(1 << 20);
  const mine = Buffer.alloc(4096, 7);
  const e: InflightEntry = { seq: 1, req: { op: Op.Write, offset: 0, length: 4096, flags: 0, payload: mine }, cb: () => {}, bytes: 4096, sent: false, since: 0 };
  t.add(e);
  const owned = (e as { payload?: Buffer }).payload;
  assert.ok(owned, 'the entry carries the bytes it sends');
  assert.notEqual(owned.buffer, mine.buffer, 'not a view of the caller\'s buffer');
  mine.fill(0xee);
  assert.ok(owned.equals(Buffer.alloc(4096, 7)), 'what is sent (and replayed) is what was given');
  // Reads, flushes and discards carry nothing.
  const r: InflightEntry = { seq: 2, req: { op: Op.Read, offset: 0, length: 4096, flags: 0 }, cb: () => {}, bytes: 4096, sent: false, since: 0 };
  t.add(r);
  assert.equal((r as { payload?: Buffer }).payload, undefined);
});

test('a pooled WRITE payload is retained, not copied, and released when the request completes or is drained', () => {
  const t = new InflightTable(64 << 20);
  const pooled = bufferPool.take(1 << 20);
  const e: InflightEntry = { seq: 1, req: { op: Op.Write, offset: 0, length: 1 << 20, flags: 0, payload: pooled.subarray(0, 1 << 20) }, cb: () => {}, bytes: 1 << 20, sent: false, since: 0 };
  t.add(e);
  assert.equal((e as { payload?: Buffer }).payload?.buffer, pooled.buffer, 'no copy of a pooled buffer');
  bufferPool.release(pooled); // the caller's callback ran: only the table holds it now
  assert.ok(bufferPool.holds(pooled), 'the table keeps it');
  t.complete(1);
  assert.ok(!bufferPool.holds(pooled), 'back to the pool once the request left the table');

  const again = bufferPool.take(1 << 20);
  t.add({ seq: 2, req: { op: Op.Write, offset: 0, length: 1 << 20, flags: 0, payload: again }, cb: () => {}, bytes: 1 << 20, sent: false, since: 0 });
  bufferPool.release(again);
  t.drainAll();
  assert.ok(!bufferPool.holds(again), 'drainAll lets go too');
});

test('ownPayload copies a caller\'s buffer once: tables given that copy (the replicas of a set) share it, none copies it again', () => {
  const caller = Buffer.alloc(4096, 7);
  const shared = ownPayload(caller);
  assert.notEqual(shared.buffer, caller.buffer, 'the first call copies');
  const tables = [new InflightTable(1 << 20), new InflightTable(1 << 20), new InflightTable(1 << 20)];
  const es = tables.map((t) => {
    const e: InflightEntry = { seq: 1, req: { op: Op.Write, offset: 0, length: 4096, flags: 0, payload: shared }, cb: () => {}, bytes: 4096, sent: false, since: 0 };
    t.add(e);
    return e;
  });
  for (const e of es) assert.equal(e.payload, shared, 'no second copy');
  caller.fill(9);
  for (const e of es) assert.equal(e.payload!.readUInt8(0), 7, 'the caller reusing its buffer changes nothing sent');
});
