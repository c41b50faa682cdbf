import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RangeLock } from '@wsblk/client';
import { rng } from '../support/random.js';

test('ranges that overlap nothing earlier are granted at once, overlapping ones wait for release', () => {
  const lock = new RangeLock();
  const order: string[] = [];
  const a = lock.acquire(0, 4096, () => order.push('a'));
  const b = lock.acquire(4096, 4096, () => order.push('b'));
  assert.ok(a.now && b.now, 'adjacent ranges do not overlap');
  const c = lock.acquire(2048, 4096, () => order.push('c'));
  assert.equal(c.now, false, 'c overlaps a and b');
  lock.release(a.hold);
  assert.deepEqual(order, [], 'c still waits for b');
  lock.release(b.hold);
  assert.deepEqual(order, ['c']);
  lock.release(c.hold);
  assert.equal(lock.size, 0);
});

test('overlapping ranges are granted in the order they were acquired, whatever order earlier ones are released in', () => {
  const lock = new RangeLock();
  const order: number[] = [];
  const first = lock.acquire(0, 8192, () => order.push(0));
  const holds = [first.hold];
  for (let i = 1; i <= 3; i++) holds.push(lock.acquire(0, 4096, () => order.push(i)).hold);
  lock.release(holds[0]!);
  assert.deepEqual(order, [1], 'only the oldest waiter goes; the next ones overlap it');
  lock.release(holds[1]!);
  assert.deepEqual(order, [1, 2]);
  lock.release(holds[2]!);
  lock.release(holds[3]!);
  assert.deepEqual(order, [1, 2, 3]);
});

test('a waiting range released before its grant (cancelled) unblocks those behind it', () => {
  const lock = new RangeLock();
  const got: string[] = [];
  const a = lock.acquire(0, 4096, () => got.push('a'));
  const b = lock.acquire(0, 4096, () => got.push('b'));
  const c = lock.acquire(0, 4096, () => got.push('c'));
  lock.release(b.hold);
  lock.release(a.hold);
  assert.deepEqual(got, ['c'], 'b was cancelled, so c follows a');
  lock.release(c.hold);
  assert.throws(() => lock.release(c.hold), /released twice/);
});

test('random overlapping holds: no two granted holds ever overlap, and each range is granted after every earlier overlapping one', () => {
  const rnd = rng(42);
  const lock = new RangeLock();
  type H = { id: number; off: number; end: number; hold?: ReturnType<RangeLock['acquire']>['hold']; granted: boolean };
  const live: H[] = [];
  const grantedAt = new Map<number, number>();
  let clock = 0;
  let next = 0;
  const grant = (h: H) => {
    for (const o of live) if (o !== h && o.granted && o.off < h.end && h.off < o.end) assert.fail(`${h.id} granted over ${o.id}`);
    h.granted = true;
    grantedAt.set(h.id, clock++);
  };
  const all: H[] = [];
  for (let step = 0; step < 5000; step++) {
    if (live.length < 32 && rnd() < 0.6) {
      const off = Math.floor(rnd() * 64) * 512;
      const h: H = { id: next++, off, end: off + (1 + Math.floor(rnd() * 16)) * 512, granted: false };
      live.push(h);
      all.push(h);
      const r = lock.acquire(h.off, h.end - h.off, () => grant(h));
      h.hold = r.hold;
      if (r.now) grant(h);
    } else {
      const granted = live.filter((h) => h.granted);
      if (granted.length === 0) continue;
      const h = granted[Math.floor(rnd() * granted.length)]!;
      live.splice(live.indexOf(h), 1);
      lock.release(h.hold!);
    }
  }
  for (const h of all) {
    if (!grantedAt.has(h.id)) continue;
    for (const e of all) {
      if (e.id < h.id && e.off < h.end && h.off < e.end) {
        assert.ok(grantedAt.has(e.id) && grantedAt.get(e.id)! < grantedAt.get(h.id)!, `${e.id} before ${h.id}`);
      }
    }
  }
});
