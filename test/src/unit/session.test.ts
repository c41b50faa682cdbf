import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session, SessionTable } from '@wsblk/server';
import { sleep, waitFor } from '../support/server.js';

class Owner {
  fenced = 0;
  fence(): void { this.fenced++; }
}

test('a new session has a random 32-hex-digit id, epoch 0 and no owner', () => {
  const a = new Session('disk0', 'c1');
  const b = new Session('disk0', 'c1');
  assert.match(a.id, /^[0-9a-f]{32}$/);
  assert.notEqual(a.id, b.id);
  assert.equal(a.epoch, 0);
  assert.equal(a.owner, null);
  assert.equal(a.nextSeq, 0);
});

test('the dedup window recalls the status of applied requests', () => {
  const s = new Session('d', 'c');
  s.remember(1, 0);
  s.remember(2, 28);
  assert.equal(s.recall(1), 0);
  assert.equal(s.recall(2), 28);
  assert.equal(s.recall(3), undefined);
});

test('the dedup window is bounded at 4096 entries and forgets the oldest first', () => {
  const s = new Session('d', 'c');
  for (let seq = 0; seq < 5000; seq++) s.remember(seq, seq % 7);
  let kept = 0;
  for (let seq = 0; seq < 5000; seq++) if (s.recall(seq) !== undefined) kept++;
  assert.equal(kept, 4096);
  assert.equal(s.recall(0), undefined);
  assert.equal(s.recall(903), undefined);
  assert.equal(s.recall(904), 904 % 7);
  assert.equal(s.recall(4999), 4999 % 7);
});

test('an id remembered again keeps one place in the window and its newest status', () => {
  const s = new Session('d', 'c');
  s.remember(0, 5);
  for (let seq = 1; seq < 4096; seq++) {
    s.remember(seq, 0);
    s.remember(seq, 28); // a replay that ran again before its first answer was recorded
  }
  assert.equal(s.recall(0), 5, 'the window holds 4096 ids, not 4096 remember() calls');
  assert.equal(s.recall(4095), 28);
  s.remember(4096, 0);
  assert.equal(s.recall(0), undefined, 'the oldest goes first');
  assert.equal(s.recall(1), 28);
  assert.equal(s.recall(4096), 0);
});

test('the dedup window keeps exactly the last 4096 distinct ids, whatever order they come in (against a model)', () => {
  // Seqs mostly in order, with writes completing out of order, replays of recent ones, jumps
  // (a resumed session), and seqs that collide in the window's index (a multiple of 8192 apart).
  const s = new Session('d', 'c');
  const model = new Map<number, number>(); // insertion order = age, as the window's ring
  const rememberBoth = (seq: number, status: number) => {
    s.remember(seq, status, 1, seq * 512, 4096);
    if (!model.has(seq)) {
      if (model.size === 4096) model.delete(model.keys().next().value!);
      model.set(seq, status);
    } else model.set(seq, status);
  };
  let x = 12345;
  const rand = (n: number) => ((x = (x * 1103515245 + 12345) % 2147483648) % n);
  let next = 0;
  for (let i = 0; i < 60_000; i++) {
    const r = rand(100);
    let seq: number;
    if (r < 70) seq = next++;
    else if (r < 85) seq = Math.max(0, next - 1 - rand(64)); // completes late, or is replayed
    else if (r < 95) seq = next + rand(32); // a later one completing first
    else if (r < 98) seq = next - 1 - rand(8192) + 8192 * (1 + rand(3)); // collides in the index
    else seq = next += rand(100_000); // a jump
    if (seq < 0) seq = 0;
    rememberBoth(seq, rand(40));
    if (i % 997 === 0) {
      for (const [k, v] of model) assert.equal(s.recall(k), v, `seq ${k} after ${i} remembers`);
      for (let k = Math.max(0, next - 10_000); k < next + 40; k++) if (!model.has(k)) assert.equal(s.recall(k), undefined, `seq ${k} is not remembered`);
    }
  }
  for (const [k, v] of model) {
    assert.equal(s.recall(k), v);
    assert.equal(s.replayDifference(k, 1, k * 512, 4096), '', `seq ${k} is the same request`);
  }
  const [some] = model.keys();
  assert.match(s.replayDifference(some!, 1, some! * 512 + 1, 4096), /replayed as op 1/);
});

test('takeOver bumps the epoch and fences the previous owner, once', () => {
  const s = new Session('d', 'c');
  const a = new Owner();
  const b = new Owner();
  assert.equal(s.takeOver(a), 1);
  assert.equal(a.fenced, 0);
  assert.equal(s.takeOver(b), 2);
  assert.equal(a.fenced, 1, 'the old owner is fenced');
  assert.equal(b.fenced, 0);
  assert.equal(s.owner, b);
  assert.equal(s.takeOver(b), 3, 'the same owner again bumps the epoch');
  assert.equal(b.fenced, 0, 'but does not fence itself');
});

test('drained() resolves at once when nothing runs, and otherwise only after every begin has its end', async () => {
  const s = new Session('d', 'c');
  let done = false;
  await s.drained();
  s.begin();
  s.begin();
  assert.equal(s.activeCount, 2);
  const p = s.drained().then(() => { done = true; });
  await sleep(10);
  assert.equal(done, false);
  s.end();
  await sleep(10);
  assert.equal(done, false, 'one operation still runs');
  s.end();
  await p;
  assert.equal(done, true);
  assert.equal(s.activeCount, 0);
});

test('several waiters on drained() are all released', async () => {
  const s = new Session('d', 'c');
  s.begin();
  let n = 0;
  const ps = [s.drained(), s.drained(), s.drained()].map((p) => p.then(() => n++));
  s.end();
  await Promise.all(ps);
  assert.equal(n, 3);
});

test('the table finds a session by id only for its own export', () => {
  const t = new SessionTable(1000);
  const s = t.create('disk0', 'c');
  assert.equal(t.find(s.id, 'disk0'), s);
  assert.equal(t.find(s.id, 'disk1'), undefined);
  assert.equal(t.find('nope', 'disk0'), undefined);
  assert.equal(t.size, 1);
});

test('a released session is dropped after the grace period', async () => {
  const t = new SessionTable(30);
  const s = t.create('d', 'c');
  const owner = new Owner();
  s.takeOver(owner);
  t.release(s, owner);
  assert.equal(s.owner, null);
  assert.equal(t.find(s.id, 'd'), s, 'still there during the grace period');
  await waitFor(() => t.size === 0, 2000, 'session expiry');
  assert.equal(t.find(s.id, 'd'), undefined);
});

test('a session resumed during the grace period is kept', async () => {
  const t = new SessionTable(30);
  const s = t.create('d', 'c');
  const a = new Owner();
  s.takeOver(a);
  t.release(s, a);
  s.takeOver(new Owner());
  await sleep(100);
  assert.equal(t.find(s.id, 'd'), s);
});

test('release by a connection that no longer owns the session changes nothing', async () => {
  const t = new SessionTable(30);
  const s = t.create('d', 'c');
  const a = new Owner();
  const b = new Owner();
  s.takeOver(a);
  s.takeOver(b);
  t.release(s, a);
  assert.equal(s.owner, b);
  await sleep(100);
  assert.equal(t.size, 1);
});

test('an expired session is dropped only once its running operations end', async () => {
  const t = new SessionTable(20);
  const s = t.create('d', 'c');
  const a = new Owner();
  s.takeOver(a);
  s.begin();
  t.release(s, a);
  await sleep(100);
  assert.equal(t.size, 1, 'an operation still runs');
  s.end();
  await waitFor(() => t.size === 0, 2000, 'session expiry after drain');
});

test('clear() drops every session and cancels their expiry timers', async () => {
  const t = new SessionTable(20);
  const s = t.create('d', 'c');
  const a = new Owner();
  s.takeOver(a);
  t.release(s, a);
  t.create('d', 'c2');
  t.clear();
  assert.equal(t.size, 0);
  await sleep(50);
  assert.equal(t.size, 0);
});

test('the table is drained only when no operation of any session runs', async () => {
  const t = new SessionTable(1000);
  const a = t.create('d', 'a');
  const b = t.create('d', 'b');
  a.begin();
  b.begin();
  let done = false;
  const p = t.drained().then(() => { done = true; });
  a.end();
  await sleep(10);
  assert.equal(done, false, 'b still runs');
  b.end();
  await p;
  assert.equal(done, true);
  t.clear();
});

test('a session made with a secret resumes only with the same secret; one made without resumes without', () => {
  const s = new Session('d', 'c', { secret: 'k'.repeat(64) });
  assert.equal(s.secretMatches('k'.repeat(64)), true);
  assert.equal(s.secretMatches('x'.repeat(64)), false);
  assert.equal(s.secretMatches('k'), false, 'another length');
  assert.equal(s.secretMatches(undefined), false);
  const old = new Session('d', 'c');
  assert.equal(old.secretMatches(undefined), true, 'old clients send no secret');
});

test('the window tells a replay that asks for another op, offset or length from the same request', () => {
  const s = new Session('d', 'c');
  s.remember(9, 0, 1, 4096, 512);
  assert.equal(s.replayDifference(9, 1, 4096, 512), '');
  assert.equal(s.replayDifference(9, 1, 0, 512), 'seq 9 was op 1 4096+512, replayed as op 1 0+512');
  assert.equal(s.replayDifference(9, 1, 4096, 1024), 'seq 9 was op 1 4096+512, replayed as op 1 4096+1024');
  assert.equal(s.replayDifference(9, 3, 4096, 512), 'seq 9 was op 1 4096+512, replayed as op 3 4096+512');
  assert.equal(s.replayDifference(10, 3, 0, 1), '', 'an unknown seq is no replay');
});

test('the writer lock holds through a lost connection and is freed by a clean close, once drained', async () => {
  const t = new SessionTable(60_000);
  const s = t.create('d', 'c');
  t.claimWriter(s);
  const a = new Owner();
  s.takeOver(a);
  t.release(s, a);
  assert.equal(t.writerOf('d'), s, 'lost: the lock waits for a resume');
  const b = new Owner();
  s.takeOver(b);
  s.begin();
  t.release(s, b, true);
  assert.equal(t.find(s.id, 'd'), undefined, 'a clean close ends the session at once');
  assert.equal(t.writerOf('d'), s, 'but its lock holds while an operation runs');
  s.end();
  await waitFor(() => t.writerOf('d') === undefined, 2000, 'writer lock freed');
  t.clear();
});

test('an expired writer session frees the lock, and forget() by another session leaves it alone', async () => {
  const t = new SessionTable(30);
  const s = t.create('d', 'c');
  const other = t.create('d', 'c2');
  t.claimWriter(s);
  t.forget(other);
  assert.equal(t.writerOf('d'), s);
  const a = new Owner();
  s.takeOver(a);
  t.release(s, a);
  await waitFor(() => t.writerOf('d') === undefined, 2000, 'expiry');
  assert.equal(t.size, 0);
});
