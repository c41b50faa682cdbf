// A replica set with real processes when no replica can answer (writes wait, or fail with EIO
// in error mode) and when a live device moves to a new server (replica add, then remove).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireTool, sleep, tempDir, wsblk } from '../support/procs.js';
import {
  allInSync, assertVerified, compareReplicas, fioPattern, fioVerify, inSyncSet, listSet, startReplicas, startSetDaemon, stateOf, waitSet,
} from '../support/replica-procs.js';

const MiB = 1 << 20;

/** Two servers, each behind a proxy that can cut it off, and a set daemon over the proxies. */
async function cutOffSet(t: import('node:test').TestContext, args: string[]) {
  const { proxies, d } = await inSyncSet(t, 2, ['--replica-timeout', '2', ...args], 2);
  const cut = () => { for (const p of proxies) { p.hold(); p.dropAll(); } };
  const heal = () => { for (const p of proxies) p.release(); };
  return { d, cut, heal };
}

test('every replica cut off: I/O waits (the default), and completes when an in-sync replica returns', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const { d, cut, heal } = await cutOffSet(t, []);
  cut();
  let done = false;
  const run = fioPattern(d.uri, '4M', '0x7e7e7e7e').then((r) => { done = true; return r; });
  await sleep(5000);
  assert.equal(done, false, 'fio waits while no replica answers');
  const s = await listSet(d.runDir);
  t.diagnostic(`while cut off: ${s.inSync} in sync, ${JSON.stringify(s.replicas.map((r) => r.state))}`);
  assert.ok(s.inSync >= 1, 'the last in-sync replica is never ejected');
  heal();
  const r = await run;
  assert.equal(r.code, 0, r.raw.slice(-2000));
  assert.equal(r.errors, 0, 'no I/O error: the writes waited and completed');
  await waitSet(d.runDir, allInSync, 'both replicas in sync again', 30_000, d.proc);
});

test('every replica cut off with --on-no-quorum error: I/O fails with EIO, and works again when they return', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const { d, cut, heal } = await cutOffSet(t, ['--on-no-quorum', 'error']);
  cut();
  await waitSet(d.runDir, (s) => s.replicas.every((r) => !r.connected), 'the daemon sees every replica gone', 15_000, d.proc);
  const started = Date.now();
  const r = await fioPattern(d.uri, '4M', '0x7e7e7e7e');
  t.diagnostic(`fio ended after ${Date.now() - started} ms with ${r.errors} errors: ${r.raw.match(/err=\s*\d+[^\n]*/)?.[0] ?? ''}`);
  assert.notEqual(r.code, 0, 'fio failed');
  assert.match(r.raw, /Input\/output error|err=\s*5\b/, 'with EIO');
  heal();
  await waitSet(d.runDir, (s) => s.replicas.some((x) => x.state === 'in-sync' && x.connected), 'an in-sync replica is back', 30_000, d.proc);
  const ok = await fioPattern(d.uri, '4M', '0x7e7e7e7e');
  assert.equal(ok.errors, 0, ok.raw.slice(-2000));
  assert.equal(ok.code, 0);
});

test('live move: replica add, in sync, replica remove under fio verify; the old server is stopped; identical', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const dir = tempDir(t);
  const [a, b, c] = await startReplicas(t, 3);
  const d = await startSetDaemon(t, dir, [a!.url, b!.url]);
  await waitSet(d.runDir, allInSync, 'the new set is in sync', 60_000, d.proc);
  const id = (await listSet(d.runDir)).id;
  const env = { WSBLK_RUN_DIR: d.runDir };
  const run = fioVerify(d.uri, '32M', ['--rate=,4m']);
  await sleep(1000);
  const add = await wsblk(['replica', 'add', id, c!.url], env);
  assert.equal(add.code, 0, add.stderr);
  await waitSet(d.runDir, (s) => stateOf(s, c!.url) === 'in-sync', 'the new replica is in sync', 60_000, d.proc);
  const rm = await wsblk(['replica', 'remove', id, a!.url], env);
  assert.equal(rm.code, 0, rm.stderr);
  const after = await listSet(d.runDir);
  assert.deepEqual(after.replicas.map((r) => r.url).sort(), [b!.url, c!.url].sort());
  await a!.kill();
  const r = await run;
  assertVerified(r, 32 * MiB, () => d.proc.output().slice(-3000));
  assert.ok(allInSync(await listSet(d.runDir)));
  assert.deepEqual(await compareReplicas([b!.url, c!.url]), [], 'the replicas are identical');
});

test('--assume-clean: three new exports are in sync at attach, nothing is compared, fio verify passes and wsblk verify finds them identical', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const servers = await startReplicas(t, 3);
  const urls = servers.map((s) => s.url);
  const d = await startSetDaemon(t, tempDir(t), urls, ['--assume-clean']);
  const s = await listSet(d.runDir);
  assert.ok(allInSync(s), `every replica in sync at attach: ${s.replicas.map((r) => `${r.url} ${r.state}`).join(', ')}`);
  const r = await fioVerify(d.uri, '16M');
  assertVerified(r, 16 * MiB, () => d.proc.output().slice(-3000));
  assert.deepEqual(await compareReplicas(urls), [], 'the replicas are identical');
  const log = d.proc.output();
  assert.match(log, /--assume-clean, every replica in sync without a compare/);
  assert.doesNotMatch(log, /resync of/, 'no resync ran');
});
