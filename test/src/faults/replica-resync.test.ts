// Resync of a replica set with real processes: a stale replica is never read from, a daemon
// killed during a resync resumes it from its saved position, and overlapping concurrent
// writes leave the replicas identical.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fio, requireTool, sleep, wsblk } from '../support/procs.js';
import { allInSync, compareReplicas, fioPattern, inSyncSet, listSet, startSetDaemon, stateOf, waitSet } from '../support/replica-procs.js';

test('a stale replica is never read from: while it resyncs and after, every read returns the new data', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  // A slow resync (4 MiB/s: 16 MiB of missed writes take ~4 s) leaves time to read while it runs.
  const { proxies: [proxy], urls, direct, d } = await inSyncSet(t, 3, ['--replica-timeout', '2', '--resync-rate', '4M'], 1);
  const old = await fioPattern(d.uri, '16M', '0xaaaaaaaa');
  assert.equal(old.errors, 0, old.raw.slice(-2000));
  proxy!.hold();
  proxy!.dropAll();
  // New data while replica 3 is away (it is ejected after the replica timeout).
  const now = await fioPattern(d.uri, '16M', '0x5b5b5b5b');
  assert.equal(now.errors, 0, now.raw.slice(-2000));
  assert.equal(stateOf(await listSet(d.runDir), urls[2]!), 'unreachable');
  proxy!.release();
  await waitSet(d.runDir, (s) => stateOf(s, urls[2]!) === 'resyncing', 'the replica resyncs', 15_000, d.proc);
  // It has no requests outstanding: the least-busy balancer would pick it first if it could.
  let rounds = 0;
  let sawResyncing = false;
  for (;;) {
    const s = await listSet(d.runDir);
    const inSync = allInSync(s);
    if (!inSync) sawResyncing = true;
    const r = await fioPattern(d.uri, '16M', '0x5b5b5b5b', true, 2);
    rounds++;
    assert.equal(r.errors, 0, `round ${rounds}: a read returned the old data:\n${r.raw.slice(-2000)}`);
    assert.equal(r.code, 0, r.raw.slice(-2000));
    if (inSync && rounds >= 3) break;
    assert.ok(rounds < 40, 'the replica came back in sync');
  }
  t.diagnostic(`${rounds} rounds of reading 16 MiB twice, ${sawResyncing ? 'some while it resynced' : 'none while it resynced'}`);
  assert.ok(sawResyncing, 'some reads ran while the replica resynced');
  assert.deepEqual(await compareReplicas(direct), []);
});

const RESYNC_ARGS = ['--replica-timeout', '2', '--resync-rate', '4M'];

/**
 * Two replicas (the second behind a proxy), 32 MiB of `pattern` written while the second was
 * cut off, and the set's daemon SIGKILLed once the resync of it shows half done.
 */
async function killedMidResync(t: import('node:test').TestContext, pattern: string) {
  const set = await inSyncSet(t, 2, RESYNC_ARGS, 1);
  const { proxies: [proxy], d } = set;
  const id = (await listSet(d.runDir)).id;
  proxy!.hold();
  proxy!.dropAll();
  const w = await fioPattern(d.uri, '32M', pattern);
  assert.equal(w.errors, 0, w.raw.slice(-2000));
  proxy!.release();
  // Killed once it shows half done: the position is saved about once a second (4 MiB at this
  // rate, more on a loaded machine), so the saved one is then well past a quarter.
  await waitSet(d.runDir, (s) => (s.replicas[1]?.resync?.percent ?? 0) >= 50, 'the resync is half done', 30_000, d.proc);
  d.proc.child.kill('SIGKILL');
  await d.proc.exited;
  return { ...set, id };
}

test('a daemon SIGKILLed during a resync: a new daemon for the device resumes the resync at its saved offset', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const args = RESYNC_ARGS;
  const { dir, urls, direct, id } = await killedMidResync(t, '0x6c6c6c6c');
  // Connected again by hand: a new daemon with the same id and run dir (where the dirty map is);
  // --steal, as the dead daemon's sessions hold the exports for 120 s (`wsblk recover` below needs neither).
  const again = await startSetDaemon(t, dir, urls, [...args, '--id', id, '--steal'], 'again');
  await waitSet(again.runDir, allInSync, 'the resumed resync completes', 60_000, again.proc);
  const m = /resync of \S+ resumes at offset (\d+)/.exec(again.proc.output());
  assert.ok(m, `the new daemon resumed the resync:\n${again.proc.output().slice(-3000)}`);
  assert.ok(Number(m[1]) >= 8 << 20, `it resumed past a quarter of the 32 MiB, not from the start (offset ${m[1]})`);
  t.diagnostic(`resumed at offset ${m[1]}`);
  const check = await fioPattern(again.uri, '32M', '0x6c6c6c6c', true, 2);
  assert.equal(check.errors, 0, check.raw.slice(-2000));
  assert.deepEqual(await compareReplicas(direct), []);
});

test('wsblk recover: an NBD replica set whose daemon was SIGKILLed mid-resync is taken over on the same socket, its sessions resumed (no --steal), the resync resumed', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const { direct, d, id } = await killedMidResync(t, '0x3c3c3c3c');
  const env = { WSBLK_RUN_DIR: d.runDir };
  // The dead daemon's sessions still hold both exports: only a daemon that shows their secret
  // (the state file's) gets them back without --steal.
  const r = await wsblk(['recover', id], env);
  t.after(() => wsblk(['disconnect', id], env));
  assert.equal(r.code, 0, `recover: ${r.stderr}`);
  assert.equal(r.stdout.trim(), d.uri, 'the same NBD socket');
  const log = () => readFileSync(join(d.runDir, `${id}.log`), 'utf8');
  await waitSet(d.runDir, allInSync, 'the resumed resync completes', 60_000);
  const m = /resync of \S+ resumes at offset (\d+)/.exec(log());
  assert.ok(m && Number(m[1]) >= 8 << 20, `the recovered daemon resumed the resync past a quarter:\n${log().slice(-3000)}`);
  t.diagnostic(`resumed at offset ${m![1]}`);
  const check = await fioPattern(d.uri, '32M', '0x3c3c3c3c', true, 2);
  assert.equal(check.errors, 0, check.raw.slice(-2000));
  assert.deepEqual(await compareReplicas(direct), []);
  assert.equal((await wsblk(['recover', id], env)).code !== 0, true, 'a live daemon is not recovered again');
});

test('overlapping concurrent writes to 3 replicas leave them identical', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const { urls, d } = await inSyncSet(t, 3);
  // Four jobs, 4k to 64k writes, all in the same 512 KiB: writes overlap all the time.
  const r = await fio([
    '--name=overlap', '--ioengine=nbd', `--uri=${d.uri}`, '--rw=randwrite', '--bssplit=4k/50:16k/30:64k/20',
    '--iodepth=32', '--numjobs=4', '--size=512k', '--norandommap', '--time_based', '--runtime=6',
    '--refill_buffers', '--group_reporting',
  ]);
  assert.equal(r.code, 0, r.raw.slice(-2000));
  assert.equal(r.errors, 0);
  const ios = r.json.jobs[0].write.total_ios as number;
  t.diagnostic(`${ios} overlapping writes`);
  assert.ok(ios > 1000, `enough writes overlapped (${ios})`);
  await sleep(200);
  assert.deepEqual(await compareReplicas(urls), [], 'the replicas are identical');
});
