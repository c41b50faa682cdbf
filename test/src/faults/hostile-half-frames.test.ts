// Issue 12, bounded memory: half-sent frames. Fifty peers each start a frame whose header claims
// 64 MiB (the largest message the server takes), send a few bytes and stall. The frame's buffer
// must grow with the bytes that came, not with the claim, and a stalled connection is closed
// after the frame timeout (default 30 s; `--frame-timeout S` where the server has it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { sleep } from '../support/procs.js';
import {
  MiB, OPCODE, RawPeer, arena, assertHealthy, timeoutOption, wsFrame,
} from '../support/hostile.js';

const BOUND = 128 * MiB;
const PEERS = 50;
const CLAIMED = 64 * MiB;
/** The frame timeout this test sets where the server takes it, and the default otherwise (s). */
const SHORT_TIMEOUT_S = 3;
const DEFAULT_TIMEOUT_S = 30;

test('fifty peers stalled inside a frame that claims 64 MiB cannot grow the server past 128 MiB and are closed after the frame timeout, while a healthy client verifies its I/O', { timeout: 120_000 }, async (t) => {
  const frameTimeout = await timeoutOption('--frame-timeout', SHORT_TIMEOUT_S, DEFAULT_TIMEOUT_S);
  const timeoutS = frameTimeout.seconds;
  const a = await arena(t, BOUND, frameTimeout.args);
  const { target, watch } = a;
  const peers = await Promise.all([...Array(PEERS).keys()].map(() => RawPeer.greeted(t, target.port)));
  const header = wsFrame(OPCODE.binary, Buffer.alloc(0), { claimed: CLAIMED });
  for (const peer of peers) peer.socket.write(Buffer.concat([header, Buffer.alloc(4096, 0x33)]));
  const stalledAt = performance.now();
  await sleep(2000);
  t.diagnostic(`${PEERS} peers stalled in a ${CLAIMED / MiB} MiB frame; ${watch.describe()}`);
  assert.ok(watch.growth < BOUND, `server memory grew past the bound: ${watch.describe()}`);

  // Every stalled connection is closed within the frame timeout and some slack (a close frame, end or reset).
  const deadline = stalledAt + (timeoutS + 10) * 1000;
  while (peers.some((p) => p.closedAt === undefined) && performance.now() < deadline) await sleep(100);
  watch.stop();
  const open = peers.filter((p) => p.closedAt === undefined).length;
  const last = Math.max(...peers.map((p) => (p.closedAt ?? performance.now()) - stalledAt));
  t.diagnostic(`frame timeout ${timeoutS} s (${frameTimeout.how}): `
    + `${PEERS - open} of ${PEERS} closed, the last after ${(last / 1000).toFixed(1)} s; codes ${[...new Set(peers.map((p) => p.closeCode))].join(',')}`);
  assert.equal(open, 0, `${open} of ${PEERS} stalled connections still open ${timeoutS + 10} s after they stalled`);
  await assertHealthy(t, a);
});
