// One writer per export, with a real `wsblk serve`: a second read-write session is refused and
// told who holds the export; read-only sessions coexist; a steal fences the old writer for good;
// a resume must present the session's secret.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, Errno, Op } from '@wsblk/shared';
import { RawClient } from '../support/raw-client.js';
import { serve } from '../support/serve-process.js';
import { pattern } from '../support/server.js';

const write = (seq: number, fill: number) => ({ seq, op: Op.Write, flags: 0, offset: 0, length: 512, payload: pattern(512, fill) });
const read = (seq: number) => ({ seq, op: Op.Read, flags: 0, offset: 0, length: 512 });

test('a second read-write session is refused with 4004 naming the holder, connected or disconnected; a clean close frees the export', async (t) => {
  const s = await serve(t, ['--export', 'disk0=memory:4M', '--export', 'disk1=memory:1M']);
  const a = await RawClient.connect(s.url('disk0'));
  const wa = await a.hello({ clientId: 'alpha-client', host: 'host-a', secret: 'a'.repeat(64) });
  const b = await RawClient.connect(s.url('disk0'));
  b.sendHello({ clientId: 'beta-client', host: 'host-b' });
  const refused = await b.closedWithin();
  assert.equal(refused.code, CloseCode.WriterBusy);
  assert.match(refused.reason, /alpha-client on host-a/);
  assert.ok(refused.reason.includes(wa.sessionId.slice(0, 8)), refused.reason);
  assert.match(refused.reason, /connected\); --steal takes over$/);
  // A holder with the longest names still leaves the hint inside a close reason's 123 bytes.
  const long = await RawClient.connect(s.url('disk1'));
  await long.hello({ clientId: 'c'.repeat(128), host: 'h'.repeat(255) });
  const late = await RawClient.connect(s.url('disk1'));
  late.sendHello({ clientId: 'late' });
  const cut = (await late.closedWithin()).reason;
  assert.match(cut, /^writer is c+ on h+ \(session [0-9a-f]{8}, connected\); --steal takes over$/);
  assert.ok(Buffer.byteLength(cut) <= 123);
  long.terminate();
  assert.equal((await a.roundTrip([write(1, 1)])).get(1)!.status, 0, 'the holder keeps writing');

  a.terminate(); // lost, not closed: the lock holds for the grace period
  await a.closed;
  const c = await RawClient.connect(s.url('disk0'));
  c.sendHello({ clientId: 'gamma-client' });
  const refused2 = await c.closedWithin();
  assert.equal(refused2.code, CloseCode.WriterBusy);
  assert.match(refused2.reason, /alpha-client on host-a .*lost \d+ s ago, may resume for 1[12]\d s\); --steal takes over$/);

  const back = await RawClient.connect(s.url('disk0'));
  const wb = await back.hello({ resume: wa.sessionId, secret: 'a'.repeat(64) });
  assert.equal(wb.resumed, true, 'the holder itself resumes');
  back.ws.close(1000);
  await back.closed;
  const d = await RawClient.connect(s.url('disk0'));
  try {
    const wd = await d.hello({ clientId: 'delta-client' });
    assert.equal(wd.resumed, false);
    assert.equal((await d.roundTrip([write(1, 2)])).get(1)!.status, 0, 'after a clean close the next writer is let in');
  } finally {
    d.terminate();
  }
});

test('read-only sessions coexist with the writer and get EPERM on writes', async (t) => {
  const s = await serve(t, ['--export', 'disk0=memory:4M']);
  const w = await RawClient.connect(s.url('disk0'));
  const r1 = await RawClient.connect(s.url('disk0'));
  const r2 = await RawClient.connect(s.url('disk0'));
  try {
    await w.hello({ clientId: 'writer' });
    const welcome = await r1.hello({ clientId: 'reader-1', readOnly: true });
    await r2.hello({ clientId: 'reader-2', readOnly: true });
    assert.equal(welcome.readOnly, true);
    assert.equal(welcome.flush, false);
    assert.equal((await w.roundTrip([write(1, 7)])).get(1)!.status, 0);
    const rr = await r1.roundTrip([write(1, 9), read(2)]);
    assert.equal(rr.get(1)!.status, Errno.EPERM);
    assert.ok(rr.get(2)!.data!.equals(pattern(512, 7)), 'the reader sees the writer\'s data, not its own refused write');
    assert.equal((await w.roundTrip([write(2, 8)])).get(2)!.status, 0, 'the writer is unaffected');
    assert.equal(r2.closeInfo, undefined);
  } finally {
    for (const c of [w, r1, r2]) c.terminate();
  }
});

test('a steal fences the old writer with 4002 naming the thief; the stolen session cannot be resumed', async (t) => {
  const s = await serve(t, ['--export', 'disk0=memory:4M']);
  const old = await RawClient.connect(s.url('disk0'));
  const wo = await old.hello({ clientId: 'old-writer', host: 'host-old', secret: 'o'.repeat(64) });
  assert.equal((await old.roundTrip([write(1, 1)])).get(1)!.status, 0);
  const thief = await RawClient.connect(s.url('disk0'));
  try {
    const wt = await thief.hello({ clientId: 'thief', host: 'host-new', steal: true });
    assert.notEqual(wt.sessionId, wo.sessionId);
    const fenced = await old.closedWithin();
    assert.equal(fenced.code, CloseCode.Fenced);
    assert.equal(fenced.reason, 'taken over by thief on host-new');
    old.sendRequests([write(2, 2)]); // too late: the socket is closed
    const again = await RawClient.connect(s.url('disk0'));
    again.sendHello({ clientId: 'old-writer', resume: wo.sessionId, secret: 'o'.repeat(64) });
    const refused = await again.closedWithin();
    assert.equal(refused.code, CloseCode.WriterBusy, 'the old session is gone: a new one, and the thief writes');
    assert.match(refused.reason, /thief on host-new/);
    const r = await thief.roundTrip([read(1)]);
    assert.ok(r.get(1)!.data!.equals(pattern(512, 1)), 'the old writer\'s acknowledged write is there, its late one is not');
  } finally {
    thief.terminate();
  }
});

test('a resume with a wrong or missing secret is refused with 4006 and the owner keeps working', async (t) => {
  const s = await serve(t, ['--export', 'disk0=memory:4M']);
  const owner = await RawClient.connect(s.url('disk0'));
  try {
    const w = await owner.hello({ clientId: 'owner', secret: 's'.repeat(64) });
    for (const secret of ['x'.repeat(64), undefined]) {
      const intruder = await RawClient.connect(s.url('disk0'));
      intruder.sendHello({ clientId: 'intruder', resume: w.sessionId, ...(secret ? { secret } : {}) });
      const closed = await intruder.closedWithin();
      assert.equal(closed.code, CloseCode.BadSecret);
      assert.equal(closed.reason, 'session secret does not match');
    }
    assert.equal(owner.closeInfo, undefined, 'the owner was not fenced');
    assert.equal((await owner.roundTrip([write(1, 3), read(2)])).get(2)!.data!.equals(pattern(512, 3)), true);
  } finally {
    owner.terminate();
  }
});

test('a client whose welcome was lost is not locked out by its own session: a hello with the same secret replaces it', async (t) => {
  const s = await serve(t, ['--export', 'disk0=memory:4M']);
  const secret = 'c'.repeat(64);
  const first = await RawClient.connect(s.url('disk0'));
  await first.hello({ clientId: 'me', host: 'h', secret });
  first.terminate(); // as if the welcome never reached the client: it cannot resume by id
  const again = await RawClient.connect(s.url('disk0'));
  const w = await again.hello({ clientId: 'me', host: 'h', secret });
  assert.equal(w.resumed, false);
  const r = await again.roundTrip([write(1, 7), read(2)]);
  assert.equal(r.get(1)!.status, 0);
  assert.ok(r.get(2)!.data!.equals(pattern(512, 7)));
  // Another client's secret is still refused while this one writes.
  const other = await RawClient.connect(s.url('disk0'));
  other.sendHello({ clientId: 'other', host: 'h2', secret: 'd'.repeat(64) });
  assert.equal((await other.closedWithin()).code, CloseCode.WriterBusy);
  again.terminate();
});
