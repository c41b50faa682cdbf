// A replica set of 3 real servers behind one NBD export while one replica goes away (killed,
// cut off by a proxy, stalled by SIGSTOP) and comes back: fio verify sees no error, the replica
// is ejected and resynced, and the replicas compare identical afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireTool, sleep } from '../support/procs.js';
import { allInSync, assertVerified, compareReplicas, fioFill, fioVerify, inSyncSet, stateOf, waitSet } from '../support/replica-procs.js';

const MiB = 1 << 20;

test('server SIGKILLed under fio verify: ejected, restarted empty, resynced by checksum, identical', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const { servers, urls, d } = await inSyncSet(t, 3, ['--replica-timeout', '2']);
  // Data written before the kill, in a range the run below does not touch: the restarted
  // (empty) server must get it back too, though no write there was missed while it was out.
  const fill = await fioFill(d.uri, '32M', '32M');
  assert.equal(fill.errors, 0, fill.raw.slice(-2000));
  const run = fioVerify(d.uri, '32M', ['--rate=,4m']);
  await sleep(2000);
  await servers[0]!.kill();
  const out = await waitSet(d.runDir, (s) => stateOf(s, urls[0]!) !== 'in-sync', 'the killed replica is ejected', 15_000);
  assert.equal(out.inSync, 2);
  await sleep(1000);
  await servers[0]!.restart();
  const r = await run;
  assertVerified(r, 32 * MiB, () => d.proc.output().slice(-3000));
  const s = await waitSet(d.runDir, allInSync, 'the restarted replica is in sync again', 30_000, d.proc);
  assert.ok(s.epoch > out.epoch, `the epoch moved on (${out.epoch} -> ${s.epoch})`);
  // Reads are spread over the three: every block of the earlier data reads back from each.
  const check = await fioFill(d.uri, '32M', '32M', true);
  const mismatches = await compareReplicas(urls);
  t.diagnostic(`verify of the earlier data: ${check.errors} errors; ${mismatches.length} mismatching ranges`);
  assert.equal(check.errors, 0, `data written before the kill reads back: ${check.raw.slice(-1500)}`);
  assert.equal(check.code, 0, check.raw.slice(-2000));
  assert.deepEqual(mismatches, [], 'the replicas are identical');
  assert.match(d.proc.output().slice(d.proc.output().indexOf('ejecting')), /came back without this set's record[\s\S]*resync of .* starts: comparing/,
    'a replica that came back empty is compared by checksum, not trusted with its dirty map');
});

test('replica cut off by a proxy under fio verify, then healed: resynced from its dirty map, identical', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const { proxies: [proxy], urls, direct, d } = await inSyncSet(t, 3, ['--replica-timeout', '2'], 1);
  const run = fioVerify(d.uri, '32M', ['--rate=,4m']);
  await sleep(2000);
  // Cut, and hold every reconnect: the replica is unreachable until healed.
  proxy!.hold();
  proxy!.dropAll();
  await waitSet(d.runDir, (s) => stateOf(s, urls[2]!) !== 'in-sync', 'the cut-off replica is ejected', 15_000);
  await sleep(2000);
  proxy!.release();
  const r = await run;
  assertVerified(r, 32 * MiB, () => d.proc.output().slice(-3000));
  await waitSet(d.runDir, allInSync, 'the healed replica is in sync again', 30_000, d.proc);
  assert.match(d.proc.output(), /resync of .* starts: \d+ regions written while it was out/, 'resync copied from the dirty map');
  assert.deepEqual(await compareReplicas(direct), [], 'the replicas are identical');
});

test('replica stalled (SIGSTOP): ejected after --replica-timeout, no I/O stalls longer, resyncs after SIGCONT', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const timeoutS = 2;
  const { servers, urls, d } = await inSyncSet(t, 3, ['--replica-timeout', String(timeoutS)]);
  t.after(() => servers[1]!.signal('SIGCONT'));
  const run = fioVerify(d.uri, '32M', ['--rate=,4m']);
  await sleep(2000);
  const stoppedAt = Date.now();
  servers[1]!.signal('SIGSTOP');
  await waitSet(d.runDir, (s) => stateOf(s, urls[1]!) !== 'in-sync', 'the stalled replica is ejected', 15_000);
  const ejectedAfter = Date.now() - stoppedAt;
  await sleep(1500);
  servers[1]!.signal('SIGCONT');
  const r = await run;
  assertVerified(r, 32 * MiB, () => d.proc.output().slice(-3000));
  const clatMaxMs = r.json.jobs[0].write.clat_ns.max / 1e6;
  t.diagnostic(`ejected after ${ejectedAfter} ms; fio write clat max ${clatMaxMs.toFixed(0)} ms`);
  // The timeout, the sweep's period (timeout / 4), storing the new epoch, and a loaded 2-core host: 3 s of margin.
  assert.ok(clatMaxMs < timeoutS * 1000 + 3000, `no write waited much longer than the replica timeout (clat max ${clatMaxMs.toFixed(0)} ms); stopped at ${new Date(stoppedAt).toISOString()}; daemon:\n${d.proc.output().slice(-3000)}`);
  assert.ok(clatMaxMs >= timeoutS * 1000 * 0.8, `some write did wait for the stalled replica (clat max ${clatMaxMs.toFixed(0)} ms): the test stalled it mid-I/O`);
  await waitSet(d.runDir, allInSync, 'the resumed replica is in sync again', 30_000, d.proc);
  assert.deepEqual(await compareReplicas(urls), [], 'the replicas are identical');
});
