import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Errno, Op } from '@wsblk/shared';
import { AttachRefused, ReplicaSet, decideMembership, type IoRequest, type ReplicaSetOptions, type SetRecord } from '@wsblk/client';
import { MemoryLink } from '../support/memory-link.js';
import { bytes, rng } from '../support/random.js';

const SIZE = 16 << 20;

function setup(t: import('node:test').TestContext, n: number, opts: Partial<ReplicaSetOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'wsblk-rs-'));
  const sets: ReplicaSet[] = [];
  t.after(async () => {
    for (const s of sets) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const events: string[] = [];
  const links = Array.from({ length: n }, (_, i) => new MemoryLink(`ws://s${i}/d`, SIZE, events));
  const options: ReplicaSetOptions = {
    mapPath: (id) => join(dir, `${encodeURIComponent(id)}.dirty`),
    replicaTimeoutMs: 400,
    resyncRate: 0,
    ...opts,
  };
  const open = async (o: ReplicaSetOptions = options, ls = links) => {
    const set = await ReplicaSet.open(ls, o);
    sets.push(set);
    return set;
  };
  return { links, events, options, dir, open };
}

function io(set: ReplicaSet, req: IoRequest): Promise<{ status: number; data?: Buffer }> {
  return new Promise((resolve) => set.submit(req, (status, data) => resolve({ status, data: data && Buffer.from(data) })));
}

const write = (set: ReplicaSet, offset: number, payload: Buffer) => io(set, { op: Op.Write, offset, length: payload.length, flags: 0, payload });
const read = (set: ReplicaSet, offset: number, length: number) => io(set, { op: Op.Read, offset, length, flags: 0 });

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function assertSame(links: MemoryLink[], what = 'replicas'): void {
  const a = links[0]!.target.read(0, SIZE);
  for (const l of links.slice(1)) assert.ok(a.equals(l.target.read(0, SIZE)), `${what}: ${l.id} differs from ${links[0]!.id}`);
}

test('a new set: the first replica is the truth, the others are compared and copied where they differ, then all are in sync', async (t) => {
  const { links, open } = setup(t, 3);
  links[0]!.target.write(1 << 20, bytes(65536, 1));
  links[2]!.target.write(5 << 20, bytes(4096, 2)); // junk on a replica that is not the truth
  const set = await open();
  await until('all in sync', () => set.status.inSync === 3);
  assertSame(links);
  const epoch = set.status.epoch;
  for (const l of links) assert.equal(l.meta?.epoch, epoch, `${l.id} stores the epoch`);
  assert.deepEqual(links[0]!.meta?.inSync, links.map((l) => l.id));
});

test('--assume-clean: a new set is in sync at once, nothing compared; on an existing set it changes nothing', async (t) => {
  const { links, options, open } = setup(t, 3);
  const set = await open({ ...options, assumeClean: true });
  assert.equal(set.status.inSync, 3, 'every replica in sync at attach');
  assert.deepEqual(set.status.replicas.map((r) => r.state), ['in-sync', 'in-sync', 'in-sync']);
  for (const l of links) assert.equal(l.sent.Checksum ?? 0, 0, `${l.id} was not compared`);
  for (const l of links) assert.deepEqual(l.meta?.inSync, links.map((x) => x.id), `${l.id} stores all three as in sync`);
  const data = bytes(65536, 9);
  assert.equal((await write(set, 1 << 20, data)).status, 0);
  await set.close();
  // The set exists now: a stale replica is still resynced, whatever --assume-clean says.
  links[2]!.meta = { ...links[2]!.meta!, epoch: 0 };
  const again = await open({ ...options, assumeClean: true });
  assert.equal(again.status.replicas[2]!.state === 'in-sync', false, 'the replica with an older record is not trusted');
  await until('all in sync', () => again.status.inSync === 3);
  assertSame(links);
  // Membership: only a new set takes it.
  const id = () => 'fresh';
  assert.deepEqual(decideMembership(['a', 'b'], new Map([['a', null], ['b', null]]), id, undefined, undefined, true),
    { inSync: ['a', 'b'], stale: [], setId: 'fresh', epoch: 0, created: true });
  const rec: SetRecord = { setId: 's1', epoch: 4, inSync: ['a'] };
  assert.deepEqual(decideMembership(['a', 'b'], new Map([['a', rec], ['b', null]]), id, undefined, undefined, true).inSync, ['a']);
});

test('writes reach every replica; reads are spread over the in-sync ones, a burst to one replica', async (t) => {
  const { links, open } = setup(t, 3);
  const set = await open();
  await until('in sync', () => set.status.inSync === 3);
  const data = bytes(1 << 20, 3);
  assert.equal((await write(set, 0, data)).status, 0);
  for (const l of links) assert.ok(l.target.read(0, 1 << 20).equals(data));
  for (const l of links) l.sent.Read = 0;
  // Six bursts of ten reads, each submitted in one run of the event loop (as a frontend does
  // with the requests of one socket read), the next one before the last is answered.
  const pending: Promise<{ status: number; data?: Buffer }>[] = [];
  for (let b = 0; b < 6; b++) {
    const before = links.map((l) => l.sent.Read ?? 0);
    for (let i = 0; i < 10; i++) pending.push(read(set, ((b * 10 + i) % 16) * 65536, 65536));
    const got = links.map((l, k) => (l.sent.Read ?? 0) - before[k]!);
    assert.deepEqual(got.filter((n) => n > 0), [10], `burst ${b} went to one replica (${got.join(', ')})`);
    await new Promise((r) => setImmediate(r));
  }
  const reads = await Promise.all(pending);
  for (const [i, r] of reads.entries()) assert.ok(r.data!.equals(data.subarray((i % 16) * 65536, (i % 16 + 1) * 65536)));
  for (const l of links) assert.ok((l.sent.Read ?? 0) >= 10, `${l.id} served ${l.sent.Read} of 60 reads`);
});

test('a replica that fails a write is ejected, and the new epoch is stored on the others before the write completes', async (t) => {
  const { links, events, open } = setup(t, 3);
  const set = await open();
  await until('in sync', () => set.status.inSync === 3);
  const before = set.status.epoch;
  links[1]!.fault = (req) => (req.op === Op.Write ? Errno.EIO : 0);
  const p = write(set, 4096, bytes(4096, 4)).then((r) => { events.push('completed'); return r; });
  assert.equal((await p).status, 0, 'the others have the data');
  const done = events.indexOf('completed');
  const stored = events.findIndex((e) => e.endsWith(`meta ${before + 1} [ws://s0/d ws://s2/d]`));
  assert.ok(stored >= 0 && stored < done, `epoch ${before + 1} stored before completion: ${events.join(', ')}`);
  assert.equal(set.status.replicas[1]!.state, 'ejected');
  assert.equal(links[2]!.meta!.epoch, before + 1);
});

test('a stalled replica is ejected after the replica timeout and I/O goes on; no request waits much longer than the timeout', async (t) => {
  const { links, open } = setup(t, 3, { replicaTimeoutMs: 300 });
  const set = await open();
  await until('in sync', () => set.status.inSync === 3);
  links[2]!.stalled = true;
  const t0 = Date.now();
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => write(set, i * 4096, bytes(4096, 10 + i))));
  const waited = Date.now() - t0;
  assert.ok(results.every((r) => r.status === 0));
  assert.ok(waited < 300 + 700, `waited ${waited} ms`);
  assert.equal(set.status.replicas[2]!.state, 'ejected');
  const r = await read(set, 0, 4096);
  assert.ok(r.data!.equals(bytes(4096, 10)));
});

test('an ejected replica that comes back is resynced from its dirty map only, is never read while stale, and rejoins in sync', async (t) => {
  const { links, open } = setup(t, 2);
  const set = await open();
  await until('in sync', () => set.status.inSync === 2);
  await write(set, 0, bytes(65536, 20));
  links[1]!.down();
  links[1]!.fault = null;
  // Writes while it is out: the replica times out and is ejected, the writes go on.
  const w = await write(set, 3 << 20, bytes(65536, 21));
  assert.equal(w.status, 0);
  assert.equal(set.status.replicas[1]!.state, 'unreachable');
  await write(set, 0, bytes(65536, 22)); // region 0 again: new data only on replica 0
  links[1]!.sent.Read = 0;
  links[1]!.sent.Write = 0;
  links[1]!.up();
  await until('in sync again', () => set.status.inSync === 2);
  assert.equal(links[1]!.sent.Read ?? 0, 0, 'the stale replica served no read');
  // Two regions were written while it was out: the resync copied those and nothing else.
  assert.equal(links[1]!.sent.Write, 2, `writes sent to the returning replica: ${links[1]!.sent.Write}`);
  assertSame(links);
  // Now it may be read, and returns the new data.
  for (let i = 0; i < 6; i++) assert.ok((await read(set, 0, 65536)).data!.equals(bytes(65536, 22)));
  assert.ok((links[1]!.sent.Read ?? 0) > 0, 'the resynced replica serves reads again');
});

test('a replica that comes back without the set\'s record (restarted empty) is compared in full, not trusted with its dirty map', async (t) => {
  const { links, open } = setup(t, 2);
  const set = await open();
  await until('in sync', () => set.status.inSync === 2);
  await write(set, 5 << 20, bytes(65536, 30)); // before the outage: the map of the outage never sees it
  links[1]!.down();
  assert.equal((await write(set, 0, bytes(65536, 31))).status, 0);
  assert.equal(set.status.replicas[1]!.state, 'unreachable');
  // Its server restarts with an empty memory export: no data, no record.
  links[1]!.target.write(0, Buffer.alloc(SIZE));
  links[1]!.meta = null;
  links[1]!.up();
  await until('in sync again', () => set.status.inSync === 2);
  assertSame(links, 'after the resync of an empty replica');
});

test('a replica that loses its unflushed writes in a power cut is resynced over them, not only over what it missed while out', async (t) => {
  const { links, open } = setup(t, 3);
  const set = await open();
  await until('in sync', () => set.status.inSync === 3);
  for (const l of links) l.volatileCache();
  await write(set, 1 << 20, bytes(65536, 40));
  assert.equal((await io(set, { op: Op.Flush, offset: 0, length: 0, flags: 0 })).status, 0);
  await write(set, 2 << 20, bytes(65536, 41)); // answered by every replica, flushed by none
  await write(set, 5 << 20, bytes(4096, 42));
  links[2]!.crash();
  assert.ok(!links[2]!.target.read(2 << 20, 65536).equals(bytes(65536, 41)), 'the crash took the unflushed write away');
  assert.ok(links[2]!.target.read(1 << 20, 65536).equals(bytes(65536, 40)), 'and kept the flushed one');
  // Writes go on; the replica is ejected after the timeout, and comes back.
  assert.equal((await write(set, 7 << 20, bytes(65536, 43))).status, 0);
  assert.equal(set.status.replicas[2]!.state, 'unreachable');
  const flushes = links[2]!.sent.Flush ?? 0;
  links[2]!.up();
  await until('in sync again', () => set.status.inSync === 3);
  assertSame(links, 'after the resync of a replica that lost unflushed writes');
  assert.ok((links[2]!.sent.Flush ?? 0) > flushes, 'the resync flushed what it copied before the replica counted as in sync');
});

test('a replica whose server restarts before the replica timeout (its session unknown) is ejected and resynced, not trusted', async (t) => {
  const { links, open } = setup(t, 3, { replicaTimeoutMs: 5000 });
  const set = await open();
  await until('in sync', () => set.status.inSync === 3);
  for (const l of links) l.volatileCache();
  await write(set, 3 << 20, bytes(65536, 50));
  links[1]!.crash();
  const pending = write(set, 4 << 20, bytes(65536, 51)); // waits: replica 1 holds it, far from its timeout
  links[1]!.up(true); // back at once, on a new session
  assert.equal((await pending).status, 0);
  assert.equal(set.status.replicas[1]!.state === 'in-sync' && set.status.inSync === 3 && links[1]!.target.read(3 << 20, 65536).equals(bytes(65536, 50)), false, 'not in sync while it lacks a write');
  await until('in sync again', () => set.status.inSync === 3);
  assertSame(links, 'after a quick restart');
  // The last in-sync replica's restart keeps it: it is the data.
  const solo = setup(t, 1);
  const one = await solo.open();
  solo.links[0]!.volatileCache();
  await write(one, 0, bytes(4096, 52));
  solo.links[0]!.crash();
  solo.links[0]!.up(true);
  assert.equal(one.status.inSync, 1);
  assert.equal((await write(one, 0, bytes(4096, 53))).status, 0);
});

test('a new attach flushes what an earlier daemon left unflushed: a power cut right after it loses nothing', async (t) => {
  const { links, open } = setup(t, 2);
  const first = await open();
  await until('in sync', () => first.status.inSync === 2);
  for (const l of links) l.volatileCache();
  await write(first, 6 << 20, bytes(65536, 60)); // never flushed by this daemon
  await first.close();
  const second = await open();
  await until('the attach flush', () => links.every((l) => l.flushesDone > 0));
  await until('in sync', () => second.status.inSync === 2);
  links[1]!.crash();
  assert.ok(links[1]!.target.read(6 << 20, 65536).equals(bytes(65536, 60)), 'the earlier write was made durable at attach');
});

test('overlapping concurrent writes with replicas that apply them in random order leave the replicas identical', async (t) => {
  const { links, open } = setup(t, 3);
  const set = await open();
  await until('in sync', () => set.status.inSync === 3);
  for (const l of links) l.jitterMs = 3;
  const rnd = rng(7);
  const writes: Promise<unknown>[] = [];
  for (let i = 0; i < 300; i++) {
    const off = Math.floor(rnd() * 32) * 4096;
    writes.push(write(set, off, bytes(4096 * (1 + Math.floor(rnd() * 4)), 100 + i)));
  }
  await Promise.all(writes);
  assertSame(links, 'after 300 overlapping writes');
});

test('every replica down: writes wait (default) and complete when an in-sync replica returns', async (t) => {
  const { links, open } = setup(t, 2, { replicaTimeoutMs: 200 });
  const set = await open();
  await until('in sync', () => set.status.inSync === 2);
  for (const l of links) l.down();
  let done = false;
  const p = write(set, 8192, bytes(4096, 30)).then((r) => { done = true; return r; });
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(done, false, 'the write waits');
  assert.equal(set.status.inSync, 2, 'while every in-sync replica is silent, none is ejected');
  links[0]!.up();
  assert.equal((await p).status, 0, 'one replica answers; the silent one is ejected and the write completes');
  assert.deepEqual(set.status.replicas.map((r) => r.state), ['in-sync', 'unreachable']);
  assert.ok(links[0]!.target.read(8192, 4096).equals(bytes(4096, 30)));
});

test('every replica down in error mode: I/O fails with EIO at once, and works again when one returns', async (t) => {
  const { links, open } = setup(t, 2, { onNoQuorum: 'error' });
  const set = await open();
  await until('in sync', () => set.status.inSync === 2);
  for (const l of links) l.down();
  assert.equal((await write(set, 0, bytes(4096, 1))).status, Errno.EIO);
  assert.equal((await read(set, 0, 4096)).status, Errno.EIO);
  links[0]!.up();
  assert.equal((await write(set, 0, bytes(4096, 2))).status, 0);
});

test('min-in-sync 2 with one replica left: writes wait until a second replica is in sync again', async (t) => {
  const { links, open } = setup(t, 2, { minInSync: 2, replicaTimeoutMs: 200 });
  const set = await open();
  await until('in sync', () => set.status.inSync === 2);
  links[1]!.down();
  await write(set, 0, bytes(4096, 1)); // ejects replica 1 after the timeout
  assert.equal(set.status.inSync, 1);
  let done = false;
  const p = write(set, 4096, bytes(4096, 2)).then((r) => { done = true; return r; });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(done, false, 'one in-sync replica is not enough');
  links[1]!.up();
  assert.equal((await p).status, 0);
  assert.equal(set.status.inSync, 2);
  assertSame(links);
});

test('a resync killed half way resumes from its saved position in a new set (a restarted daemon)', async (t) => {
  const { links, options, dir , open } = setup(t, 2, { resyncRate: 4 << 20 });
  let set = await open();
  await until('in sync', () => set.status.inSync === 2);
  links[1]!.down();
  for (let i = 0; i < 64; i++) await write(set, i * 65536 * 2, bytes(65536, 40 + i));
  assert.equal(set.status.replicas[1]!.state, 'unreachable');
  links[1]!.up();
  await until('resync under way', () => (set.status.replicas[1]!.resync?.percent ?? 0) >= 30, 10_000);
  const logged: string[] = [];
  await set.close(); // the daemon stops half way
  links[1]!.connected = true;
  const origWrite = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string) => { logged.push(String(chunk)); return origWrite(chunk); }) as typeof process.stderr.write;
  try {
    set = await open({ ...options, resyncRate: 0 });
    await until('in sync after resume', () => set.status.inSync === 2, 10_000);
  } finally {
    process.stderr.write = origWrite;
  }
  const resumed = logged.find((l) => /resumes at offset (\d+)/.test(l));
  assert.ok(resumed, `the log says where it resumed:\n${logged.join('')}`);
  assert.ok(Number(/resumes at offset (\d+)/.exec(resumed)![1]) > 0);
  assertSame(links);
  void dir;
});

test('attach: the highest epoch decides; stale replicas are resynced; ambiguity is refused unless forced', () => {
  const ids = ['a', 'b', 'c'];
  const rec = (epoch: number, inSync: string[]): SetRecord => ({ setId: 'S', epoch, inSync });
  const id = () => 'NEW';
  let d = decideMembership(ids, new Map([['a', rec(5, ['a', 'b'])], ['b', rec(5, ['a', 'b'])], ['c', rec(3, ['a', 'b', 'c'])]]), id);
  assert.deepEqual(d.inSync, ['a', 'b']);
  assert.deepEqual(d.stale, ['c']);
  // b is listed at epoch 5 but holds epoch 4: it missed the change that listed it.
  d = decideMembership(ids, new Map([['a', rec(5, ['a', 'b'])], ['b', rec(4, ['a', 'b', 'c'])]]), id);
  assert.deepEqual(d.inSync, ['a']);
  // Only a replica that missed writes is reachable (c was left out at epoch 5): refused.
  assert.throws(() => decideMembership(ids, new Map([['c', rec(3, ['a', 'b', 'c'])], ['b', rec(5, ['a'])]]), id), (e: Error) => e instanceof AttachRefused && /--force-in-sync/.test(e.message) && /unreachable: a/.test(e.message));
  // c and b in sync at epoch 4 as far as they know, but a (in sync at 4 too) may hold epoch 5: ambiguous.
  assert.throws(() => decideMembership(ids, new Map([['b', rec(4, ['a', 'b', 'c'])], ['c', rec(4, ['a', 'b', 'c'])]]), id), (e: Error) => e instanceof AttachRefused && /a is unreachable/.test(e.message));
  // ... unless this client stored epoch 4 itself (a restarted daemon).
  d = decideMembership(ids, new Map([['b', rec(4, ['a', 'b', 'c'])], ['c', rec(4, ['a', 'b', 'c'])]]), id, undefined, rec(4, ['a', 'b', 'c']));
  assert.deepEqual(d.inSync, ['b', 'c']);
  d = decideMembership(ids, new Map([['c', rec(3, ['a', 'b', 'c'])]]), id, 'c');
  assert.deepEqual(d.inSync, ['c']);
  assert.throws(() => decideMembership(ids, new Map([['a', { setId: 'X', epoch: 1, inSync: ['a'] }], ['b', rec(1, ['b'])]]), id), /different replica sets/);
  d = decideMembership(ids, new Map([['a', null], ['b', null], ['c', null]]), id);
  assert.deepEqual([d.inSync, d.stale, d.created, d.setId], [['a'], ['b', 'c'], true, 'NEW']);
  assert.throws(() => decideMembership(ids, new Map([['a', null], ['b', null]]), id), /every replica reachable/);
});

test('attach refuses replicas of different sizes', async (t) => {
  const { links, options, open } = setup(t, 1);
  const other = new MemoryLink('ws://big/d', SIZE * 2);
  await assert.rejects(open(options, [links[0]!, other]), /differ in size/);
});
