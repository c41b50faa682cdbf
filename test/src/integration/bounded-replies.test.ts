// Bounded memory at a real `wsblk serve`: peers that never read their replies, that never say
// hello, that never answer a keepalive. The server's RSS is sampled while a healthy client's
// verified I/O goes on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, Op } from '@wsblk/shared';
import { RawClient } from '../support/raw-client.js';
import { SilentPeer, rssOf } from '../support/silent-peer.js';
import { serve, type ServeProcess } from '../support/serve-process.js';
import { pattern, sleep, tempDir } from '../support/server.js';

const MiB = 1 << 20;
/** RSS a server may grow by besides the bound under test: heap churn, code, socket state. */
const SLACK = 80 * MiB;

/** `messages` messages of 16 READs of 4 MiB each from a peer that does not read its socket. */
async function hog(s: ServeProcess, messages: number, base: number): Promise<SilentPeer> {
  const p = await SilentPeer.open(s.port, 'disk0');
  p.hello({ clientId: `hog-${base}`, readOnly: true });
  p.stopReading();
  for (let m = 0; m < messages; m++) {
    p.requests(Array.from({ length: 16 }, (_, i) => ({ seq: m * 16 + i, op: Op.Read, flags: 0, offset: ((m * 16 + i) % 60) * 4 * MiB, length: 4 * MiB })));
  }
  return p;
}

/** Verified writes and reads for `ms` while sampling the server's RSS; returns the peak and the I/O count. */
async function healthyIoWhileSampling(s: ServeProcess, ms: number): Promise<{ peak: number; rounds: number }> {
  const c = await RawClient.connect(s.url('disk0'));
  await c.hello({ clientId: 'healthy' });
  let peak = rssOf(s.pid);
  let rounds = 0;
  const end = Date.now() + ms;
  try {
    while (Date.now() < end) {
      const data = pattern(64 << 10, rounds);
      const r = await c.roundTrip([
        { seq: 2 * rounds, op: Op.Write, flags: 0, offset: 255 * MiB, length: data.length, payload: data },
      ]);
      assert.equal(r.get(2 * rounds)!.status, 0);
      const back = await c.roundTrip([{ seq: 2 * rounds + 1, op: Op.Read, flags: 0, offset: 255 * MiB, length: data.length }]);
      assert.ok(back.get(2 * rounds + 1)!.data!.equals(data), 'the healthy client reads back what it wrote');
      rounds++;
      peak = Math.max(peak, rssOf(s.pid));
      await sleep(20);
    }
  } finally {
    c.terminate();
  }
  return { peak, rounds };
}

test('a client that never reads its replies costs the server about --max-conn-buffer; its requests all run once it reads', async (t) => {
  const dir = tempDir('wsblk-bounded-');
  t.after(() => dir.cleanup());
  const s = await serve(t, ['--export', `disk0=file:${dir.path('d.img')},size=256M`, '--max-conn-buffer', '16M']);
  const before = rssOf(s.pid);
  const p = await hog(s, 16, 0); // 256 READs of 4 MiB: 1 GiB of replies
  const { peak, rounds } = await healthyIoWhileSampling(s, 2500);
  const growth = peak - before;
  t.diagnostic(`server RSS growth ${(growth / MiB).toFixed(0)} MiB with 1 GiB of replies unread (bound 16 MiB + ${SLACK / MiB} MiB slack); healthy rounds ${rounds}`);
  assert.ok(rounds >= 10, `the healthy client got on (${rounds} verified rounds)`);
  assert.ok(growth < 16 * MiB + SLACK, `RSS grew ${(growth / MiB).toFixed(0)} MiB`);
  p.startReading();
  const want = 256 * 4 * MiB;
  const deadline = Date.now() + 30_000;
  while (p.received < want && Date.now() < deadline) await sleep(50);
  assert.ok(p.received >= want, `every held READ ran once the client read (${p.received} of ${want} bytes)`);
  p.destroy();
});

test('clients that never read cost the server about --max-buffer together', async (t) => {
  const dir = tempDir('wsblk-bounded-');
  t.after(() => dir.cleanup());
  const s = await serve(t, ['--export', `disk0=file:${dir.path('d.img')},size=256M`, '--max-buffer', '16M']);
  const before = rssOf(s.pid);
  const hogs = await Promise.all([0, 1, 2, 3].map((i) => hog(s, 8, i))); // 4 x 512 MiB, 64 MiB each allowed alone
  const { peak, rounds } = await healthyIoWhileSampling(s, 2500);
  const growth = peak - before;
  t.diagnostic(`server RSS growth ${(growth / MiB).toFixed(0)} MiB with 4 x 512 MiB of replies unread (bound 16 MiB + ${SLACK / MiB} MiB slack); healthy rounds ${rounds}`);
  assert.ok(rounds >= 10, `the healthy client got on (${rounds} verified rounds)`);
  assert.ok(growth < 16 * MiB + SLACK, `RSS grew ${(growth / MiB).toFixed(0)} MiB`);
  for (const h of hogs) h.destroy();
});

test('a connection that sends no hello is closed with 4005 after --hello-timeout', async (t) => {
  const s = await serve(t, ['--export', 'disk0=memory:1M', '--hello-timeout', '0.5']);
  const c = await RawClient.connect(s.url('disk0'));
  const closed = await c.closedWithin(4000);
  assert.equal(closed.code, CloseCode.Timeout);
  assert.equal(closed.reason, 'no hello within 0.5 s');
  const ok = await RawClient.connect(s.url('disk0'));
  try {
    await ok.hello();
    await sleep(800);
    assert.equal(ok.closeInfo, undefined, 'a connection that said hello in time stays');
  } finally {
    ok.terminate();
  }
});

test('a peer that answers no keepalive is closed; one that answers stays', async (t) => {
  const s = await serve(t, ['--export', 'disk0=memory:1M', '--keepalive', '0.5']);
  const mute = await SilentPeer.open(s.port, 'disk0');
  mute.hello({ clientId: 'mute', readOnly: true }); // reads its socket, never answers a ping
  const alive = await RawClient.connect(s.url('disk0')); // the ws package answers pings
  try {
    await alive.hello({ clientId: 'alive' });
    const t0 = Date.now();
    await Promise.race([mute.ended, sleep(6000)]);
    assert.ok(mute.closed, 'the mute peer was closed');
    t.diagnostic(`mute peer closed after ${Date.now() - t0} ms`);
    assert.equal(alive.closeInfo, undefined, 'the answering peer stays');
    assert.equal((await alive.roundTrip([{ seq: 1, op: Op.Read, flags: 0, offset: 0, length: 512 }])).get(1)!.status, 0);
  } finally {
    alive.terminate();
    mute.destroy();
  }
});
