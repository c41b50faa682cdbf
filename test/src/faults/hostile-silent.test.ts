// Issue 12, bounded memory: silent connections. An upgraded connection that sends no hello is
// closed within a few seconds (hello timeout, 5 s by default), and one whose peer stops
// answering the server's keepalive pings is closed (`--keepalive S`, 10 s by default: this
// test sets 1 s where the server takes it and expects the close within 3 intervals).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { sleep } from '../support/procs.js';
import { MiB, RawPeer, arena, assertHealthy, timeoutOption } from '../support/hostile.js';

const BOUND = 128 * MiB;
const SILENT = 20;
const HELLO_TIMEOUT_S = 5;
const KEEPALIVE_S = 1;
const KEEPALIVE_DEFAULT_S = 10;
/** Scheduling slack on a loaded machine (s). */
const SLACK_S = 2.5;

test('connections that send no hello are closed within 5 s, and a peer that stops answering keepalives within 3 intervals, while a healthy client verifies its I/O', { timeout: 90_000 }, async (t) => {
  const keepalive = await timeoutOption('--keepalive', KEEPALIVE_S, KEEPALIVE_DEFAULT_S);
  const keepaliveS = keepalive.seconds;
  const a = await arena(t, BOUND, keepalive.args);
  const { target, watch } = a;

  // Silent but alive: they upgrade, never send a hello, and answer pings (the hello timeout, not the keepalive, must close them).
  const t0 = performance.now();
  const silent = await Promise.all([...Array(SILENT).keys()].map(async () => {
    const peer = await RawPeer.open(target.port);
    t.after(() => peer.destroy());
    peer.answerPings = true;
    return peer;
  }));
  // Said hello, then reads on but never answers a ping.
  const deaf = await RawPeer.greeted(t, target.port);
  const deafAt = performance.now();

  const helloDeadline = t0 + (HELLO_TIMEOUT_S + SLACK_S) * 1000;
  const keepaliveDeadline = deafAt + (3 * keepaliveS + SLACK_S) * 1000;
  const lastDeadline = Math.max(helloDeadline, keepaliveDeadline);
  while ((silent.some((p) => p.closedAt === undefined) || deaf.closedAt === undefined) && performance.now() < lastDeadline) await sleep(100);
  watch.stop();

  const lateSilent = silent.filter((p) => p.closedAt === undefined || p.closedAt > helloDeadline).length;
  const slowest = Math.max(...silent.map((p) => (p.closedAt ?? performance.now()) - t0)) / 1000;
  const deafClose = deaf.closedAt === undefined ? undefined : (deaf.closedAt - deafAt) / 1000;
  t.diagnostic(`silent: ${SILENT - lateSilent} of ${SILENT} closed in time, the slowest after ${slowest.toFixed(1)} s; codes ${[...new Set(silent.map((p) => p.closeCode))].join(',')}`);
  t.diagnostic(`keepalive ${keepaliveS} s (${keepalive.how}): the deaf peer saw ${deaf.pings} pings, `
    + `${deafClose === undefined ? 'still open' : `closed after ${deafClose.toFixed(1)} s with code ${deaf.closeCode}`}; ${watch.describe()}`);
  assert.equal(lateSilent, 0, `${lateSilent} of ${SILENT} connections without a hello still open ${HELLO_TIMEOUT_S + SLACK_S} s after the upgrade`);
  assert.ok(deafClose !== undefined && deafAt + deafClose * 1000 <= keepaliveDeadline,
    `a peer that answers no keepalive is still open ${3 * keepaliveS + SLACK_S} s after its last message`);
  assert.ok(watch.growth < BOUND, `server memory grew past the bound: ${watch.describe()}`);
  await assertHealthy(t, a);
});
