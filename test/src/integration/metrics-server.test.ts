// The server's /metrics on the admin listener: after real I/O from a client, promtool accepts
// the text and the series count what the client did (requests, bytes, latency, errors,
// sessions, faults set, replays answered from the window).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Errno, Op } from '@wsblk/shared';
import { faultClient, serveWithFaults } from '../support/fault-admin.js';
import { promtoolCheck, series } from '../support/promtool.js';
import { io, pattern } from '../support/server.js';
import { RawClient } from '../support/raw-client.js';

test('GET /metrics: promtool accepts it and it counts the I/O done', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:1M', '--export', 'idle=memory:64K']);
  const disk = await faultClient(t, s.url('disk0'), 'metrics-test');
  for (let i = 0; i < 5; i++) assert.equal((await io(disk, { op: Op.Write, offset: i * 4096, length: 4096, payload: pattern(4096, i) })).status, 0);
  for (let i = 0; i < 3; i++) assert.equal((await io(disk, { op: Op.Read, offset: 0, length: 8192 })).status, 0);
  assert.equal((await io(disk, { op: Op.Flush, offset: 0, length: 0 })).status, 0);
  await s.set({ name: 'bad', kind: 'bad-range', export: 'disk0', offset: 512 << 10, length: 4096, ops: ['read'], errno: 'EIO' });
  assert.equal((await io(disk, { op: Op.Read, offset: 512 << 10, length: 4096 })).status, Errno.EIO);

  const r = await fetch(`${s.admin}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await r.text();
  await promtoolCheck(t, text);
  const d = { export: 'disk0' };
  assert.equal(series(text, 'wsblk_server_requests_total', { ...d, op: 'write' }), 5);
  assert.equal(series(text, 'wsblk_server_requests_total', { ...d, op: 'read' }), 4);
  assert.equal(series(text, 'wsblk_server_requests_total', { ...d, op: 'flush' }), 1);
  assert.equal(series(text, 'wsblk_server_request_bytes_total', { ...d, op: 'write' }), 5 * 4096);
  assert.equal(series(text, 'wsblk_server_request_bytes_total', { ...d, op: 'read' }), 3 * 8192 + 4096);
  assert.equal(series(text, 'wsblk_server_request_duration_seconds_count', { ...d, op: 'write' }), 5);
  assert.equal(series(text, 'wsblk_server_request_duration_seconds_bucket', { ...d, op: 'write', le: '+Inf' }), 5);
  const sum = series(text, 'wsblk_server_request_duration_seconds_sum', { ...d, op: 'write' })!;
  assert.ok(sum > 0 && sum < 5, `5 memory writes took ${sum} s in all`);
  assert.equal(series(text, 'wsblk_server_errors_total', { ...d, errno: 'EIO' }), 1);
  assert.equal(series(text, 'wsblk_server_sessions', { ...d, state: 'connected' }), 1);
  assert.equal(series(text, 'wsblk_server_sessions', { export: 'idle', state: 'connected' }), 0);
  assert.equal(series(text, 'wsblk_server_faults_active', { ...d, kind: 'bad-range' }), 1);
  assert.equal(series(text, 'wsblk_server_stale_writes_total', d), 0);
  assert.equal(series(text, 'wsblk_server_replay_hits_total', d), 0);
  assert.equal(series(text, 'wsblk_server_sessions_fenced_total', d), 0);
  assert.equal(series(text, 'wsblk_server_requests_total', { export: 'idle', op: 'read' }), undefined, 'no I/O, no series');

  await s.clear();
  const after = await (await fetch(`${s.admin}/metrics`)).text();
  assert.equal(series(after, 'wsblk_server_faults_active', { ...d, kind: 'bad-range' }), undefined, 'a cleared fault is gone');
});

test('GET /metrics counts a fenced connection and a replay answered from the session window', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:1M']);
  const a = await RawClient.connect(s.url('disk0'));
  const b = await RawClient.connect(s.url('disk0'));
  t.after(() => { a.terminate(); b.terminate(); });
  const wa = await a.hello({ clientId: 'A' });
  const write = { seq: 1, op: Op.Write, flags: 0, offset: 0, length: 4096, payload: pattern(4096, 1) };
  assert.equal((await a.roundTrip([write])).get(1)!.status, 0);
  // B resumes A's session while A is still connected (A is fenced), and replays A's write.
  await b.hello({ clientId: 'A', resume: wa.sessionId });
  assert.equal((await b.roundTrip([write])).get(1)!.status, 0);
  const text = await (await fetch(`${s.admin}/metrics`)).text();
  await promtoolCheck(t, text);
  const d = { export: 'disk0' };
  assert.equal(series(text, 'wsblk_server_sessions_fenced_total', d), 1);
  assert.equal(series(text, 'wsblk_server_replay_hits_total', d), 1);
  assert.equal(series(text, 'wsblk_server_requests_total', { ...d, op: 'write' }), 2, 'the replay is answered, and counted');
  assert.equal(series(text, 'wsblk_server_sessions', { ...d, state: 'connected' }), 1);
  assert.ok(series(text, 'wsblk_server_fence_wait_seconds_total', d)! >= 0);
});
