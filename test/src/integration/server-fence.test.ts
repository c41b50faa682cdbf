// Sessions across connections: the fence that keeps an old epoch's write from landing after a
// newer one, the dedup window that answers replays without applying them again, and resume.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, Errno, Op } from '@wsblk/shared';
import { MemoryBackend, delayFilter } from '@wsblk/server';
import { RemoteDisk } from '@wsblk/client';
import { RawClient } from '../support/raw-client.js';
import { RecordingBackend, io, pattern, sleep, startServer } from '../support/server.js';

const MiB = 1 << 20;
const X = 3 * MiB;
const HOLD_MS = 500;

/** An export whose first WRITE at X is held HOLD_MS in the server; `inner` sees what lands. */
function heldExport() {
  const inner = new RecordingBackend(new MemoryBackend(16 * MiB));
  const outer = new RecordingBackend(delayFilter(inner, HOLD_MS, { ops: ['write'], offset: X, count: 1 }));
  return { inner, outer };
}

describe('the session fence', () => {
  test('a write of an old epoch can never land after a write of the newer epoch that resumed the session', async () => {
    const { inner, outer } = heldExport();
    const s = await startServer({ disk0: outer });
    const a = await RawClient.connect(s.url('disk0'));
    const b = await RawClient.connect(s.url('disk0'));
    try {
      const wa = await a.hello({ clientId: 'A' });
      assert.deepEqual([wa.resumed, wa.epoch], [false, 1]);
      const pA = pattern(4096, 0xa);
      const pB = pattern(4096, 0xb);

      const aStarted = outer.nextStart((c) => c.op === 'write');
      a.sendRequests([{ seq: 1, op: Op.Write, flags: 0, offset: X, length: 4096, payload: pA }]);
      const aCall = await aStarted; // A's write is in the server, held

      const wb = await b.hello({ clientId: 'B', resume: wa.sessionId });
      b.sendRequests([{ seq: 2, op: Op.Write, flags: 0, offset: X, length: 4096, payload: pB }]);
      const rb = await b.replies([2]);
      assert.equal(rb.get(2)!.status, 0);

      // B resumed A's session, one epoch later, and was welcomed only after A's write was done.
      assert.deepEqual([wb.resumed, wb.sessionId, wb.epoch, wb.nextSeq], [true, wa.sessionId, 2, 2]);
      assert.ok(wb.at >= aCall.start + HOLD_MS - 50, `welcome ${Math.round(wb.at - aCall.start)} ms after A's write started; the hold is ${HOLD_MS} ms`);

      // A was cut off first, with the fence's close code; it got no reply for its write.
      const ac = await a.closedWithin();
      assert.equal(ac.code, CloseCode.Fenced);
      assert.equal(ac.reason, 'fenced by a newer connection');
      assert.ok(ac.at <= wb.at, 'the old connection is closed before the new one is welcomed');
      assert.deepEqual(a.received.map((e) => e.msg.kind), ['welcome']);

      // In the backend, A's write finished before B's write started.
      const writes = inner.callsOf('write');
      assert.equal(writes.length, 2);
      assert.ok(writes[0]!.data!.equals(pA) && writes[1]!.data!.equals(pB), 'A landed first, then B');
      assert.ok(writes[0]!.end! <= writes[1]!.start);

      const r = await b.roundTrip([{ seq: 3, op: Op.Read, flags: 0, offset: X, length: 4096 }]);
      assert.ok(r.get(3)!.data!.equals(pB), 'the newer epoch wins');
    } finally {
      a.terminate();
      b.terminate();
      await s.close();
    }
  });

  test('a steal waits for the old writer\'s running write before the thief is welcomed, and the old session is gone', async () => {
    const { inner, outer } = heldExport();
    const s = await startServer({ disk0: outer });
    const a = await RawClient.connect(s.url('disk0'));
    const b = await RawClient.connect(s.url('disk0'));
    try {
      const wa = await a.hello({ clientId: 'A', host: 'host-a' });
      const pA = pattern(4096, 0xa);
      const pB = pattern(4096, 0xb);
      const aStarted = outer.nextStart((c) => c.op === 'write');
      a.sendRequests([{ seq: 1, op: Op.Write, flags: 0, offset: X, length: 4096, payload: pA }]);
      const aCall = await aStarted; // A's write is in the server, held

      const wb = await b.hello({ clientId: 'B', host: 'host-b', steal: true });
      assert.equal(wb.resumed, false);
      assert.notEqual(wb.sessionId, wa.sessionId);
      assert.ok(wb.at >= aCall.start + HOLD_MS - 50, `welcome ${Math.round(wb.at - aCall.start)} ms after A's write started; the hold is ${HOLD_MS} ms`);
      const ac = await a.closedWithin();
      assert.deepEqual([ac.code, ac.reason], [CloseCode.Fenced, 'taken over by B on host-b']);
      assert.ok(ac.at <= wb.at, 'the old writer is fenced before the thief is welcomed');

      assert.equal((await b.roundTrip([{ seq: 1, op: Op.Write, flags: 0, offset: X, length: 4096, payload: pB }])).get(1)!.status, 0);
      const writes = inner.callsOf('write');
      assert.ok(writes[0]!.data!.equals(pA) && writes[1]!.data!.equals(pB), 'A landed first, then B');
      assert.ok(writes[0]!.end! <= writes[1]!.start);
      assert.notEqual(writes[0]!.ctx.session, writes[1]!.ctx.session);
    } finally {
      a.terminate();
      b.terminate();
      await s.close();
    }
  });

  test('a resuming client that sends requests before its welcome is closed, and nothing of it runs', async () => {
    const { inner, outer } = heldExport();
    const s = await startServer({ disk0: outer });
    const a = await RawClient.connect(s.url('disk0'));
    const b = await RawClient.connect(s.url('disk0'));
    try {
      const wa = await a.hello();
      const aStarted = outer.nextStart();
      a.sendRequests([{ seq: 1, op: Op.Write, flags: 0, offset: X, length: 512, payload: pattern(512, 1) }]);
      await aStarted;
      b.sendHello({ resume: wa.sessionId });
      b.sendRequests([{ seq: 2, op: Op.Write, flags: 0, offset: 0, length: 512, payload: pattern(512, 2) }]);
      const bc = await b.closedWithin();
      assert.equal(bc.code, CloseCode.Malformed);
      assert.equal(bc.reason, 'request before welcome');
      await a.closedWithin();
      await sleep(HOLD_MS + 100);
      assert.deepEqual(inner.callsOf('write').map((c) => c.offset), [X], 'only A\'s write ran');
      assert.equal(b.received.length, 0, 'B was never welcomed');
    } finally {
      a.terminate();
      b.terminate();
      await s.close();
    }
  });

  test('RemoteDisk takes over a session with resumeSession and the old RemoteDisk is told it was fenced', async () => {
    const backend = new RecordingBackend(new MemoryBackend(4 * MiB));
    const s = await startServer({ disk0: backend });
    const first = await RemoteDisk.connect({ url: s.url('disk0'), connectTimeoutMs: 5000 });
    const fenced = new Promise<void>((r) => first.once('fenced', () => r()));
    const second = await RemoteDisk.connect({ url: s.url('disk0'), resumeSession: first.stats.sessionId, connectTimeoutMs: 5000 });
    try {
      await fenced;
      assert.equal(second.stats.sessionId, first.stats.sessionId);
      assert.equal(second.stats.epoch, 2);
      assert.equal(first.stats.connected, false);
      assert.equal((await io(second, { op: Op.Write, offset: 0, length: 512, payload: pattern(512, 1) })).status, 0);
    } finally {
      await first.close(100);
      await second.close();
      await s.close();
    }
  });
});

describe('the dedup window', () => {
  test('a replayed write the session already applied is answered from the window, not applied again', async () => {
    const backend = new RecordingBackend(new MemoryBackend(4 * MiB));
    const s = await startServer({ disk0: backend });
    const a = await RawClient.connect(s.url('disk0'));
    const b = await RawClient.connect(s.url('disk0'));
    try {
      const wa = await a.hello();
      const first = await a.roundTrip([
        { seq: 5, op: Op.Write, flags: 0, offset: 0, length: 4096, payload: pattern(4096, 1) },
        { seq: 6, op: Op.Discard, flags: 0, offset: MiB, length: 4096 },
        { seq: 7, op: Op.Write, flags: 0, offset: 4 * MiB, length: 512, payload: pattern(512, 9) },
      ]);
      assert.deepEqual([first.get(5)!.status, first.get(6)!.status, first.get(7)!.status], [0, 0, Errno.ENOSPC]);
      a.terminate();
      await a.closed;
      const callsBefore = backend.calls.length;

      const wb = await b.hello({ resume: wa.sessionId });
      assert.equal(wb.resumed, true);
      // The replays carry different data on purpose: if the write ran again, the read would show it.
      const again = await b.roundTrip([
        { seq: 5, op: Op.Write, flags: 0, offset: 0, length: 4096, payload: pattern(4096, 2) },
        { seq: 6, op: Op.Discard, flags: 0, offset: MiB, length: 4096 },
      ]);
      assert.deepEqual([again.get(5)!.status, again.get(6)!.status], [0, 0]);
      assert.equal(backend.calls.length, callsBefore, 'the backend was not called for the replays');
      const r = await b.roundTrip([{ seq: 8, op: Op.Read, flags: 0, offset: 0, length: 4096 }]);
      assert.ok(r.get(8)!.data!.equals(pattern(4096, 1)), 'the first write stands');
      // A request refused by the checks is not in the window: its replay is checked again.
      const refused = await b.roundTrip([{ seq: 7, op: Op.Write, flags: 0, offset: 4 * MiB, length: 512, payload: pattern(512, 9) }]);
      assert.equal(refused.get(7)!.status, Errno.ENOSPC);
    } finally {
      a.terminate();
      b.terminate();
      await s.close();
    }
  });

  test('a replay whose op, offset or length differs from the remembered request closes with 4000, and nothing runs', async () => {
    const backend = new RecordingBackend(new MemoryBackend(4 * MiB));
    // One export per case: a closed writer keeps its export for the grace period.
    const s = await startServer({ offset: backend, length: backend, op: backend });
    try {
      for (const [what, replay] of [
        ['offset', { seq: 5, op: Op.Write, flags: 0, offset: 512, length: 512, payload: pattern(512, 2) }],
        ['length', { seq: 5, op: Op.Write, flags: 0, offset: 0, length: 1024, payload: pattern(1024, 2) }],
        ['op', { seq: 5, op: Op.Discard, flags: 0, offset: 0, length: 512 }],
      ] as const) {
        const c = await RawClient.connect(s.url(what));
        await c.hello();
        await c.roundTrip([{ seq: 5, op: Op.Write, flags: 0, offset: 0, length: 512, payload: pattern(512, 1) }]);
        const callsBefore = backend.calls.length;
        c.sendRequests([replay]);
        const closed = await c.closedWithin();
        assert.equal(closed.code, CloseCode.Malformed, `a replay with another ${what}`);
        assert.match(closed.reason, /^replay does not match: seq 5 was op 1 0\+512, replayed as/);
        assert.equal(backend.calls.length, callsBefore, 'nothing reached the backend');
        c.terminate();
      }
    } finally {
      await s.close();
    }
  });

  test('a reply lost with the connection is recovered by replaying the same sequence number', async () => {
    const backend = new RecordingBackend(delayFilter(new MemoryBackend(4 * MiB), 200, { ops: ['write'] }));
    const s = await startServer({ disk0: backend });
    const a = await RawClient.connect(s.url('disk0'));
    const b = await RawClient.connect(s.url('disk0'));
    try {
      const wa = await a.hello();
      const started = backend.nextStart();
      a.sendRequests([{ seq: 1, op: Op.Write, flags: 0, offset: 0, length: 512, payload: pattern(512, 1) }]);
      await started;
      a.terminate(); // the reply will have nowhere to go
      const wb = await b.hello({ resume: wa.sessionId });
      assert.equal(wb.resumed, true);
      const r = await b.roundTrip([{ seq: 1, op: Op.Write, flags: 0, offset: 0, length: 512, payload: pattern(512, 1) }]);
      assert.equal(r.get(1)!.status, 0);
      assert.equal(backend.callsOf('write').length, 1, 'applied once');
    } finally {
      a.terminate();
      b.terminate();
      await s.close();
    }
  });

  test('a new process resuming the session is told a nextSeq above every sequence number seen', async () => {
    const backend = new RecordingBackend(new MemoryBackend(4 * MiB));
    const s = await startServer({ disk0: backend });
    const a = await RawClient.connect(s.url('disk0'));
    try {
      const wa = await a.hello();
      assert.equal(wa.nextSeq, 0);
      await a.roundTrip([
        { seq: 1, op: Op.Write, flags: 0, offset: 0, length: 512, payload: pattern(512, 1) },
        { seq: 2, op: Op.Write, flags: 0, offset: 512, length: 512, payload: pattern(512, 2) },
        { seq: 10, op: Op.Read, flags: 0, offset: 0, length: 512 },
        { seq: 3, op: Op.Flush, flags: 0, offset: 0, length: 0 },
        { seq: 12, op: Op.Write, flags: 0, offset: 4 * MiB, length: 512, payload: pattern(512, 3) },
      ]);
      a.terminate();
      await a.closed;
      const probe = await RawClient.connect(s.url('disk0'));
      const wp = await probe.hello({ resume: wa.sessionId });
      probe.terminate();
      assert.equal(wp.nextSeq, 13);
      await probe.closed;

      // A RemoteDisk started afresh on that session numbers its requests from there, so its
      // writes are applied instead of being mistaken for replays of seq 1 and 2.
      const disk = await RemoteDisk.connect({ url: s.url('disk0'), resumeSession: wa.sessionId, connectTimeoutMs: 5000 });
      try {
        assert.equal(disk.stats.sessionId, wa.sessionId);
        const writesBefore = backend.callsOf('write').length;
        assert.equal((await io(disk, { op: Op.Write, offset: 0, length: 512, payload: pattern(512, 7) })).status, 0);
        assert.equal((await io(disk, { op: Op.Write, offset: 512, length: 512, payload: pattern(512, 8) })).status, 0);
        assert.equal(backend.callsOf('write').length, writesBefore + 2);
        const back = await io(disk, { op: Op.Read, offset: 0, length: 1024 });
        assert.ok(back.data!.equals(Buffer.concat([pattern(512, 7), pattern(512, 8)])));
      } finally {
        await disk.close();
      }
    } finally {
      a.terminate();
      await s.close();
    }
  });
});

describe('resume', () => {
  test('an unknown session, or one of another export, is not resumed: the client gets a new session', async () => {
    const s = await startServer({ disk0: new MemoryBackend(MiB), disk1: new MemoryBackend(MiB) });
    const clients: RawClient[] = [];
    const open = async (name: string) => { const c = await RawClient.connect(s.url(name)); clients.push(c); return c; };
    try {
      const w0 = await (await open('disk0')).hello();
      // Read-only: disk0's writer is w0 (one writer per export).
      const unknown = await (await open('disk0')).hello({ resume: 'f'.repeat(32), readOnly: true });
      assert.deepEqual([unknown.resumed, unknown.epoch], [false, 1]);
      assert.notEqual(unknown.sessionId, 'f'.repeat(32));
      const other = await (await open('disk1')).hello({ resume: w0.sessionId });
      assert.equal(other.resumed, false);
      assert.notEqual(other.sessionId, w0.sessionId);
      assert.equal(clients[0]!.closeInfo, undefined, 'the disk0 session owner was not fenced');
    } finally {
      for (const c of clients) c.terminate();
      await s.close();
    }
  });

  test('a session is resumable during the grace period after its connection closed, and gone after it', async () => {
    const s = await startServer({ disk0: new MemoryBackend(MiB) }, { sessionGraceMs: 150 });
    try {
      const a = await RawClient.connect(s.url('disk0'));
      const wa = await a.hello();
      a.terminate();
      await a.closed;
      const b = await RawClient.connect(s.url('disk0'));
      const wb = await b.hello({ resume: wa.sessionId });
      assert.deepEqual([wb.resumed, wb.sessionId, wb.epoch], [true, wa.sessionId, 2]);
      b.terminate();
      await b.closed;
      await sleep(600);
      const c = await RawClient.connect(s.url('disk0'));
      const wc = await c.hello({ resume: wa.sessionId });
      c.terminate();
      assert.equal(wc.resumed, false);
      assert.notEqual(wc.sessionId, wa.sessionId);
    } finally {
      await s.close();
    }
  });
});
