import { test } from 'node:test';
import assert from 'node:assert/strict';
// ByteQueue is internal to the NBD frontend: imported from its build output.
import { ByteQueue } from '../../../client/dist/nbd/byte-queue.js';

function queueOf(...parts: string[]): ByteQueue {
  const q = new ByteQueue();
  for (const p of parts) q.push(Buffer.from(p));
  return q;
}

test('take inside one chunk is a view of that chunk, not a copy', () => {
  const chunk = Buffer.from('abcdefgh');
  const q = new ByteQueue();
  q.push(chunk);
  const t = q.take(3);
  assert.equal(t.toString(), 'abc');
  assert.equal(t.buffer, chunk.buffer);
  assert.equal(q.length, 5);
});

test('take across chunks copies, into scratch when given', () => {
  const q = queueOf('ab', 'cd', 'efg');
  const scratch = Buffer.alloc(8);
  const t = q.take(5, scratch);
  assert.equal(t.toString(), 'abcde');
  assert.equal(t.buffer, scratch.buffer);
  assert.equal(q.take(2).toString(), 'fg');
  assert.equal(q.length, 0);
});

test('copyInto and skip stop at what is queued', () => {
  const q = queueOf('hello', ' ', 'world');
  const dst = Buffer.alloc(20);
  assert.equal(q.copyInto(dst, 2, 7), 7);
  assert.equal(dst.toString('utf8', 2, 9), 'hello w');
  assert.equal(q.skip(100), 4);
  assert.equal(q.length, 0);
  assert.equal(q.copyInto(dst, 0, 5), 0);
  q.push(Buffer.from('again'));
  assert.equal(q.take(5).toString(), 'again');
});

test('many small chunks are consumed in order', () => {
  const q = new ByteQueue();
  for (let i = 0; i < 1000; i++) q.push(Buffer.from([i & 0xff]));
  for (let i = 0; i < 500; i++) assert.equal(q.take(2).readUInt16BE(0), (((2 * i) & 0xff) << 8) | ((2 * i + 1) & 0xff));
  assert.equal(q.length, 0);
});
