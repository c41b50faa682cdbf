// BufferPool (shared/src/pool.ts): reuse, reference counts, and the buffers it must never take.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool, POOL_MIN_BYTES, SlabCutter } from '@wsblk/shared';

const KiB = 1024;
const MiB = 1 << 20;

test('a released buffer is handed out again; a small one is never pooled', () => {
  const pool = new BufferPool(16 * MiB, 0);
  const a = pool.take(MiB);
  assert.equal(a.length, MiB);
  assert.ok(pool.holds(a));
  pool.release(a);
  assert.ok(!pool.holds(a));
  const b = pool.take(MiB);
  assert.equal(b.buffer, a.buffer, 'the same memory comes back');
  assert.deepEqual(pool.stats, { freeBuffers: 0, freeBytes: 0, allocated: 1, reused: 1 });

  const small = pool.take(POOL_MIN_BYTES - 1);
  assert.equal(small.length, POOL_MIN_BYTES - 1);
  assert.ok(!pool.holds(small));
  pool.release(small);
  assert.equal(pool.stats.freeBuffers, 0);
});

test('retain counts holders: the buffer comes back after the last release, once', () => {
  const pool = new BufferPool(16 * MiB, 0);
  const frame = pool.take(2 * MiB);
  const v1 = frame.subarray(100, 100 + MiB);
  const v2 = frame.subarray(100 + MiB);
  pool.retain(v1);
  pool.retain(v2);
  pool.release(frame); // the reader is done with the frame; two views still held
  assert.ok(pool.holds(v1));
  assert.notEqual(pool.take(2 * MiB).buffer, frame.buffer, 'a held buffer is not handed out');
  pool.release(v1);
  assert.ok(pool.holds(v2));
  pool.release(v2);
  assert.ok(!pool.holds(frame));
  // A second release of the same view (a bug elsewhere) must not free it twice.
  pool.release(v2);
  assert.equal(pool.stats.freeBuffers, 1);
  const again = pool.take(2 * MiB);
  assert.equal(again.buffer, frame.buffer);
  // The pool cannot tell a late release by a former holder from one by the new holder: every
  // holder must release exactly once (what the NBD transmission and WsConn do).
  pool.release(v1);
  assert.ok(!pool.holds(again));
});

test('buffers the pool did not hand out are ignored by retain and release', () => {
  const pool = new BufferPool(16 * MiB, 0);
  const own = Buffer.allocUnsafeSlow(MiB);
  pool.retain(own);
  pool.release(own);
  pool.release(own);
  assert.equal(pool.stats.freeBuffers, 0);
  assert.notEqual(pool.take(MiB).buffer, own.buffer);
});

test('sizes: a free buffer serves a request at most a quarter smaller; the free list is capped', () => {
  const pool = new BufferPool(3 * MiB, 0);
  const big = pool.take(2 * MiB);
  pool.release(big);
  assert.notEqual(pool.take(MiB).buffer, big.buffer, 'half the size: not worth holding 2 MiB for');
  const near = pool.take(2 * MiB - 100 * KiB);
  assert.equal(near.buffer, big.buffer, 'within a quarter: reused');
  assert.equal(near.length, 2 * MiB - 100 * KiB);
  pool.release(near);

  const a = pool.take(MiB);
  const b = pool.take(MiB);
  pool.release(a);
  assert.equal(pool.stats.freeBytes, 3 * MiB);
  pool.release(b); // over the cap: dropped, not kept
  assert.equal(pool.stats.freeBytes, 3 * MiB);
  pool.trim();
  assert.deepEqual([pool.stats.freeBuffers, pool.stats.freeBytes], [0, 0]);
});

test('free buffers are dropped after the pool has been idle', async () => {
  const pool = new BufferPool(16 * MiB, 50);
  pool.release(pool.take(MiB));
  assert.equal(pool.stats.freeBuffers, 1);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(pool.stats.freeBuffers, 0);
});

test('a pool in use keeps its free buffers past the idle time', async () => {
  const pool = new BufferPool(16 * MiB, 60);
  pool.release(pool.take(MiB));
  // A take every 5 ms for 4 idle periods: every tick of the idle timer sees takes since the last.
  for (let i = 0; i < 48; i++) {
    await new Promise((r) => setTimeout(r, 5));
    pool.release(pool.take(MiB));
  }
  assert.equal(pool.stats.freeBuffers, 1);
  assert.equal(pool.stats.allocated, 1);
  await new Promise((r) => setTimeout(r, 250));
  assert.equal(pool.stats.freeBuffers, 0);
});

test('SlabCutter: pieces of a pooled slab; the slab comes back (warm) once every piece is released and the cutter moved on', () => {
  const pool = new BufferPool(16 * MiB, 0);
  const cutter = new SlabCutter(pool, POOL_MIN_BYTES);
  const pieces = Array.from({ length: 16 }, (_, i) => {
    const p = cutter.cut(4 * KiB);
    p.fill(i);
    return p;
  });
  const slab = pieces[0]!.buffer;
  assert.ok(pieces.every((p) => p.buffer === slab), 'sixteen 4 KiB pieces from one 64 KiB slab');
  assert.ok(pieces.every((p, i) => p.every((b) => b === i)), 'pieces do not overlap');
  assert.ok(pool.holds(pieces[3]!), 'a piece is a pooled buffer: ownPayload retains it, no copy');
  const next = cutter.cut(100); // the slab is used up: a new one, and the cutter lets go of the old
  assert.notEqual(next.buffer, slab);
  for (let i = 0; i < 15; i++) pool.release(pieces[i]!);
  assert.ok(pool.holds(pieces[15]!), 'one piece still held keeps the whole slab');
  assert.equal(pool.stats.freeBuffers, 0);
  pool.retain(pieces[15]!); // a second holder (another replica's table)
  pool.release(pieces[15]!);
  assert.equal(pool.stats.freeBuffers, 0, 'the second holder still has it');
  pool.release(pieces[15]!);
  assert.equal(pool.stats.freeBuffers, 1, 'the last release gives the slab back');
  // The cutter's next slab is the one given back, not fresh memory.
  for (let i = 0; i < 16; i++) cutter.cut(4 * KiB);
  assert.equal(cutter.cut(8).buffer, slab, 'the slab given back is cut again');
  assert.throws(() => new SlabCutter(pool, 4 * KiB), /would not be pooled/);
});
