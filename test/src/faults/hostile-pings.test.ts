// Issue 12, bounded memory: pings nobody reads. Every ping is answered with a pong; a peer that
// floods pings and never reads makes a server without backpressure queue every pong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../support/procs.js';
import {
  MiB, OPCODE, RawPeer, arena, assertHealthy, flood, repeated, wsFrame,
} from '../support/hostile.js';

const BOUND = 128 * MiB;

test('a peer that floods 125-byte pings and never reads the pongs cannot grow the server past 128 MiB, while a healthy client verifies its I/O', { timeout: 90_000 }, async (t) => {
  const a = await arena(t, BOUND);
  const { target, watch } = a;
  const peer = await RawPeer.greeted(t, target.port);
  peer.stopReading();
  const ping = wsFrame(OPCODE.ping, Buffer.alloc(125, 0x70));
  const r = await flood(peer.socket, repeated(ping), { bytes: 1024 * MiB, ms: 8000, stop: () => watch.over });
  await sleep(500);
  watch.stop();
  peer.destroy();
  t.diagnostic(`${Math.round(r.bytes / ping.length)} pings (${Math.round(r.bytes / MiB)} MiB) sent in ${r.ms} ms, ended: ${r.ended}; ${watch.describe()}`);
  assert.ok(watch.growth < BOUND, `server memory grew past the bound: ${watch.describe()}`);
  await assertHealthy(t, a);
});
