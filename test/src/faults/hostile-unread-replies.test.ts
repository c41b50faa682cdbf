// Issue 12, bounded memory: replies nobody reads. A peer asks for many 4 MiB READs and never
// reads its socket; a server that executes them all queues every reply in its memory. The
// attack is paced and capped so that the unfixed server fails at a few hundred MiB, not the
// gigabytes it would otherwise reach.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { GiB, HealthyClient, MiB, OPCODE, RawPeer, RssWatch, assertHealthy, mib, startTarget, wsFrame } from '../support/hostile.js';
import { sleep } from '../support/procs.js';
import { Op, encodeRequests, joinParts, type BlockRequest } from '@wsblk/shared';

const BOUND = 128 * MiB;
const READ = 4 * MiB;

/** One message of `count` READs of 4 MiB, each spanning four of the memory export's 1 MiB chunks (a fresh buffer per reply). */
function reads(first: number, count: number): Buffer {
  const reqs: BlockRequest[] = [];
  for (let i = 0; i < count; i++) {
    const seq = first + i;
    reqs.push({ seq, op: Op.Read, flags: 0, offset: ((seq % 60) * READ) + 512, length: READ });
  }
  return wsFrame(OPCODE.binary, joinParts(encodeRequests(reqs, false)));
}

test('a peer that sends many 4 MiB READs and never reads the replies cannot grow the server past 128 MiB, while a healthy client verifies its I/O', { timeout: 90_000 }, async (t) => {
  const target = await startTarget(t);
  const healthy = await HealthyClient.start(t, target.url);
  const watch = new RssWatch(target.proc, { bound: BOUND });
  t.after(() => watch.stop());
  const roundsBefore = healthy.rounds;
  const peer = await RawPeer.open(target.port);
  t.after(() => peer.destroy());
  await peer.hello();
  peer.stopReading();

  // Phase 1: messages of 16 READs (64 MiB of replies each), 2 GiB asked for in all, paced.
  let seq = 1;
  let asked = 0;
  const t0 = performance.now();
  while (asked < 2 * GiB && !watch.over && peer.closedAt === undefined) {
    peer.socket.write(reads(seq, 16));
    seq += 16;
    asked += 16 * READ;
    await sleep(100);
  }
  await sleep(1000);
  t.diagnostic(`phase 1: ${mib(asked)} of READs asked for in ${Math.round(performance.now() - t0)} ms; ${watch.describe()}`);
  // Phase 2, only when the server held out: one message of 4096 READs (16 GiB of replies).
  // A server that stopped reading this socket never sees it; one that reads on must not run it.
  if (!watch.over && peer.closedAt === undefined && watch.growth < BOUND / 2) {
    peer.socket.write(reads(seq, 4096));
    asked += 4096 * READ;
    for (let i = 0; i < 20 && !watch.over; i++) await sleep(100);
    t.diagnostic(`phase 2: one message of 4096 READs; ${watch.describe()}`);
  }
  watch.stop();
  peer.destroy();
  t.diagnostic(`${mib(asked)} of READs asked for; ${watch.describe()}`);
  assert.ok(watch.growth < BOUND, `server memory grew past the bound: ${watch.describe()}`);
  await assertHealthy(target, healthy, roundsBefore);
  await healthy.stop();
});
