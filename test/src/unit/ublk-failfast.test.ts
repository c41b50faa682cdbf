// The ublk frontend's failfast deadlines (md's members): EIO at the deadline, and an answer that
// comes later is dropped, never completing (or filling the buffer of) the tag's next request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Errno, Op } from '@wsblk/shared';
import { FailfastDeadlines, type BlockTarget, type IoCallback, type IoRequest } from '@wsblk/client';

/** A target that answers only when the test says so (a mock: this tests the frontend's logic). */
class HeldTarget {
  readonly held: { req: IoRequest; cb: IoCallback }[] = [];
  readonly info = { size: 1 << 20 } as BlockTarget['info'];
  submit(req: IoRequest, cb: IoCallback): void {
    this.held.push({ req, cb });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function setup(ms: number) {
  const done: { tag: number; status: number; data?: string }[] = [];
  const expired: IoRequest[] = [];
  const d = new FailfastDeadlines(4, ms, (tag, status, data) => done.push({ tag, status, ...(data ? { data: data.toString() } : {}) }), (_t, req) => expired.push(req));
  return { d, done, expired, target: new HeldTarget() };
}

test('an answer before the deadline completes the tag once, with its status and data', async () => {
  const { d, done, expired, target } = setup(50);
  d.submit(target as unknown as BlockTarget, 2, { op: Op.Read, offset: 4096, length: 5, flags: 0 });
  target.held[0]!.cb(0, Buffer.from('hello'));
  await sleep(80);
  assert.deepEqual(done, [{ tag: 2, status: 0, data: 'hello' }]);
  assert.equal(expired.length, 0, 'the deadline was disarmed');
});

test('no answer by the deadline: EIO; the late answer is dropped', async () => {
  const { d, done, expired, target } = setup(30);
  d.submit(target as unknown as BlockTarget, 1, { op: Op.Write, offset: 0, length: 512, flags: 0 });
  await sleep(60);
  assert.deepEqual(done, [{ tag: 1, status: Errno.EIO }]);
  assert.equal(expired.length, 1);
  target.held[0]!.cb(0);
  assert.equal(done.length, 1, 'a late answer completes nothing');
});

test('a late READ answer does not complete the reused tag\'s next request, and the transport\'s request is not rewritten', async () => {
  const { d, done, target } = setup(30);
  // The frontend's one reusable request object per tag.
  const slot: IoRequest = { op: Op.Read, offset: 8192, length: 3, flags: 0 };
  d.submit(target as unknown as BlockTarget, 0, slot);
  await sleep(60);
  assert.deepEqual(done, [{ tag: 0, status: Errno.EIO }]);
  // The kernel reuses tag 0 for a new request: the frontend rewrites its object.
  slot.op = Op.Write;
  slot.offset = 0;
  slot.length = 4;
  d.submit(target as unknown as BlockTarget, 0, slot);
  const [first, second] = target.held;
  assert.deepEqual([first!.req.op, first!.req.offset, first!.req.length], [Op.Read, 8192, 3], 'the transport keeps the request it was given (it may replay it)');
  first!.cb(0, Buffer.from('old'));
  assert.equal(done.length, 1, 'the old READ\'s data reaches no buffer');
  second!.cb(0);
  assert.deepEqual(done, [{ tag: 0, status: Errno.EIO }, { tag: 0, status: 0 }]);
  await sleep(60);
  assert.equal(done.length, 2, 'the answered request\'s deadline was disarmed');
});

test('clear() drops every pending deadline and answer', async () => {
  const { d, done, target } = setup(30);
  d.submit(target as unknown as BlockTarget, 3, { op: Op.Flush, offset: 0, length: 0, flags: 0 });
  d.clear();
  await sleep(60);
  target.held[0]!.cb(0);
  assert.deepEqual(done, []);
});
