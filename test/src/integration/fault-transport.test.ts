// Transport faults set at run time on a real `wsblk serve`, seen by a real client (RemoteDisk in
// this process): latency and bandwidth measured, a black hole the client's I/O timeout sees as
// silence, a reset the client recovers from by reconnecting and replaying, replies dropped while
// the requests are still applied.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Errno, Op } from '@wsblk/shared';
import type { RemoteDisk } from '@wsblk/client';
import { faultClient as disk, serveWithFaults, timed } from '../support/fault-admin.js';
import { RawClient } from '../support/raw-client.js';
import { io, pattern, sleep } from '../support/server.js';

const K4 = 4096;

test('latency: each reply is held ms +- jitter; on requests too; other clients are not', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:4M', '--export', 'disk1=memory:4M']);
  const d = await disk(t, s.url('disk0'), 'slow');
  const other = await disk(t, s.url('disk1'), 'fast');
  const read = (x: RemoteDisk) => timed(() => io(x, { op: Op.Read, offset: 0, length: K4 }));
  await read(d);
  await s.set({ name: 'lag', kind: 'latency', ms: 150, jitter: 10, client: 'slow' });
  const [r, ms] = await read(d);
  assert.equal(r.status, 0);
  const [, otherMs] = await read(other);
  await s.set({ name: 'lag-up', kind: 'latency', ms: 100, direction: 'requests', client: 'slow' });
  const [, both] = await read(d);
  t.diagnostic(`replies +150: ${ms.toFixed(0)} ms; both ways: ${both.toFixed(0)} ms; another client: ${otherMs.toFixed(1)} ms`);
  assert.ok(ms >= 135 && ms < 1000, `${ms} ms`);
  assert.ok(both >= 230, `${both} ms`);
  assert.ok(otherMs < 100, `the other client: ${otherMs} ms`);
  await s.clear();
  const [, after] = await read(d);
  assert.ok(after < 100, `cleared: ${after} ms`);
});

test('bandwidth: 1 MiB of reads at 2 MiB/s takes about half a second', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:4M']);
  const d = await disk(t, s.url('disk0'), 'c1');
  const reads = () => Promise.all(Array.from({ length: 4 }, (_, i) => io(d, { op: Op.Read, offset: i * 262144, length: 262144 })));
  const [, before] = await timed(reads);
  await s.set({ kind: 'bandwidth', rate: 2 << 20, export: 'disk0' });
  const [rs, ms] = await timed(reads);
  t.diagnostic(`1 MiB: ${before.toFixed(0)} ms, limited to 2 MiB/s: ${ms.toFixed(0)} ms (${((1 << 20) / 1024 / (ms / 1000)).toFixed(0)} KiB/s)`);
  assert.ok(rs.every((r) => r.status === 0 && r.data!.length === 262144));
  assert.ok(ms >= 450 && ms < 3000, `${ms} ms`);
});

test('black hole: the connection stays open and silent; the client\'s I/O timeout fires and nothing was applied', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:4M', '--keepalive', '0.2']);
  const d = await disk(t, s.url('disk0'), 'victim', { ioTimeoutMs: 600 });
  const reader = await disk(t, s.url('disk0'), 'reader', { readOnly: true });
  await s.set({ name: 'hole', kind: 'blackhole', client: 'victim' });
  const [w, ms] = await timed(() => io(d, { op: Op.Write, offset: 0, length: K4, payload: pattern(K4, 1) }));
  t.diagnostic(`write answered ${w.status} after ${ms.toFixed(0)} ms`);
  assert.equal(w.status, Errno.EIO);
  assert.ok(ms >= 550, `${ms} ms`);
  assert.equal(d.stats.timedOut, 1);
  assert.ok((await io(reader, { op: Op.Read, offset: 0, length: K4 })).data!.equals(Buffer.alloc(K4)), 'the write was never applied');
  // The server's own keepalive (0.2 s) does not close a black-holed connection.
  assert.doesNotMatch(s.proc.output(), /no answer to keepalives/);
  // What a client's keepalive sees: its pings go unanswered, and so do its requests.
  const raw = await RawClient.connect(s.url('disk0'));
  t.after(() => raw.terminate());
  await raw.hello({ clientId: 'victim', readOnly: true });
  const pong = () => new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 500);
    raw.ws.once('pong', () => { clearTimeout(timer); resolve(true); });
    raw.ws.ping();
  });
  assert.equal(await pong(), false, 'no pong in a black hole');
  raw.sendRequests([{ seq: 1, op: Op.Read, flags: 0, offset: 0, length: K4 }]);
  await assert.rejects(raw.replies([1], 300), 'no reply');
  await s.clear('hole');
  assert.equal(await pong(), true, 'pongs again once cleared');
  const later = await io(d, { op: Op.Write, offset: 0, length: K4, payload: pattern(K4, 2) });
  assert.equal(later.status, 0);
  assert.ok((await io(reader, { op: Op.Read, offset: 0, length: K4 })).data!.equals(pattern(K4, 2)));
});

test('reset: the connection is cut at the next reply; the client reconnects, replays, and every write is acknowledged and reads back', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:4M']);
  const d = await disk(t, s.url('disk0'), 'victim');
  const session = d.stats.sessionId;
  await s.set({ name: 'rst', kind: 'reset', count: 1, client: 'victim' });
  const writes = await Promise.all(Array.from({ length: 8 }, (_, i) => io(d, { op: Op.Write, offset: i * K4, length: K4, payload: pattern(K4, 10 + i) })));
  assert.ok(writes.every((w) => w.status === 0));
  const st = d.stats;
  t.diagnostic(`reconnects ${st.reconnects}, replayed ${st.replayed}, epoch ${st.epoch}`);
  assert.ok(st.reconnects >= 1, 'reconnected');
  assert.ok(st.replayed >= 1, 'replayed');
  assert.equal(st.sessionId, session, 'the session was resumed');
  for (let i = 0; i < 8; i++) assert.ok((await io(d, { op: Op.Read, offset: i * K4, length: K4 })).data!.equals(pattern(K4, 10 + i)));
  const list = await s.api('GET', '/faults');
  assert.equal(list.json[0].hits, 1, 'count=1: one reset');
});

test('drop replies: requests are applied but never answered', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:4M']);
  const d = await disk(t, s.url('disk0'), 'victim', { ioTimeoutMs: 2000 });
  const reader = await disk(t, s.url('disk0'), 'reader', { readOnly: true });
  await s.set({ name: 'mute', kind: 'drop', direction: 'replies', client: 'victim' });
  let answered = false;
  const w = io(d, { op: Op.Write, offset: 0, length: K4, payload: pattern(K4, 3) }).then((r) => { answered = true; return r; });
  let seen = false;
  for (let i = 0; i < 40 && !seen; i++) {
    seen = (await io(reader, { op: Op.Read, offset: 0, length: K4 })).data!.equals(pattern(K4, 3));
    if (!seen) await sleep(25);
  }
  assert.ok(seen, 'the write was applied');
  await sleep(300);
  assert.equal(answered, false, 'and never answered');
  await s.clear('mute');
  // The reply was dropped for good: the client's I/O timeout ends the wait.
  assert.equal((await w).status, Errno.EIO);
});
