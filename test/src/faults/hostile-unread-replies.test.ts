// Issue 12, bounded memory: replies nobody reads. A peer asks for READs and never reads its
// socket; a server that executes them all queues every reply in its memory. First one batch of
// 4096 READs (the most one message may carry) of 64 KiB, then 4 MiB READs, paced. Capped so that
// the unfixed server fails at a few hundred MiB, not the gigabytes it would otherwise reach.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { GiB, MiB, OPCODE, RawPeer, arena, assertHealthy, mib, wsFrame } from '../support/hostile.js';
import { sleep } from '../support/procs.js';
import { LIMITS, Op, encodeRequests, joinParts, type BlockRequest } from '@wsblk/shared';

const BOUND = 128 * MiB;

/**
 * One message of `count` READs of `length` bytes from seq `first`. Each spans two of the memory
 * export's 1 MiB chunks, so that each reply is a fresh buffer (a READ inside one chunk is a view).
 */
function reads(first: number, count: number, length: number): Buffer {
  const reqs: BlockRequest[] = [];
  for (let i = 0; i < count; i++) {
    const seq = first + i;
    reqs.push({ seq, op: Op.Read, flags: 0, offset: (seq % 200 + 1) * MiB - length / 2, length });
  }
  return wsFrame(OPCODE.binary, joinParts(encodeRequests(reqs, false)));
}

test('a peer that sends many large READs and never reads the replies cannot grow the server past 128 MiB, while a healthy client verifies its I/O', { timeout: 90_000 }, async (t) => {
  const a = await arena(t, BOUND);
  const { target, watch } = a;
  const peer = await RawPeer.greeted(t, target.port);
  peer.stopReading();
  const t0 = performance.now();

  // Phase 1: one message of 4096 READs of 64 KiB: 256 MiB of replies asked for at once.
  const batch = LIMITS.maxRecords;
  peer.socket.write(reads(1, batch, 64 << 10));
  let seq = 1 + batch;
  let asked = batch * (64 << 10);
  for (let i = 0; i < 10 && !watch.over; i++) await sleep(100);
  t.diagnostic(`phase 1: one message of ${batch} READs of 64 KiB; ${watch.describe()}`);

  // Phase 2: messages of 16 READs of 4 MiB, paced, until 2 GiB were asked for in all.
  while (asked < 2 * GiB && !watch.over && peer.closedAt === undefined) {
    peer.socket.write(reads(seq, 16, 4 * MiB));
    seq += 16;
    asked += 16 * 4 * MiB;
    await sleep(100);
  }
  for (let i = 0; i < 10 && !watch.over; i++) await sleep(100);
  watch.stop();
  peer.destroy();
  t.diagnostic(`${mib(asked)} of READs asked for in ${Math.round(performance.now() - t0)} ms, ${seq - 1} requests; ${watch.describe()}`);
  assert.ok(watch.growth < BOUND, `server memory grew past the bound: ${watch.describe()}`);
  await assertHealthy(t, a);
});
