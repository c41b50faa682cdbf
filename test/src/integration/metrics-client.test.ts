// The daemon's metrics: after real I/O through the NBD export of a replica-set device, its
// /metrics (connect --metrics-listen) passes promtool and counts what was done, per device and
// per replica; the control socket answers the same text; `wsblk stats --json` gives the figures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { askControl, controlPath } from '@wsblk/client';
import { WSBLK, freePort, requireTool, sleep, startProc, startServer, tempDir, wsblk } from '../support/procs.js';
import { promtoolCheck, series } from '../support/promtool.js';

const execFileP = promisify(execFile);

test('connect --metrics-listen: promtool accepts /metrics, the series count the I/O done, stats --json reads them', { timeout: 90_000 }, async (t) => {
  if (!(await requireTool(t, 'qemu-io'))) return;
  const dir = tempDir(t);
  const [p1, p2, mport] = [await freePort(), await freePort(), await freePort()];
  await startServer(t, p1, ['d0=memory:16M']);
  await startServer(t, p2, ['d0=memory:16M']);
  const env = { WSBLK_RUN_DIR: join(dir, 'run') };
  const sock = join(dir, 'd0.sock');
  const c = await wsblk(['connect', `ws://127.0.0.1:${p1}/d0,ws://127.0.0.1:${p2}/d0`, '--nbd', sock, '--metrics-listen', `127.0.0.1:${mport}`], env);
  t.after(() => wsblk(['disconnect', '--all'], env));
  assert.equal(c.code, 0, c.stderr);
  const uri = c.stdout.trim();
  // 4 WRITEs of 64K and 2 READs of 64K, one request each (qemu-io issues them as asked).
  await execFileP('qemu-io', ['-f', 'raw',
    '-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x22 64k 64k', '-c', 'write -P 0x33 128k 64k', '-c', 'write -P 0x44 1M 64k',
    '-c', 'read -P 0x11 0 64k', '-c', 'read -P 0x44 1M 64k', uri]);

  const r = await fetch(`http://127.0.0.1:${mport}/metrics`);
  assert.equal(r.status, 200);
  const text = await r.text();
  await promtoolCheck(t, text);
  const id = 'nbd0';
  // The device's own series carry no replica label: match them by an exact label set.
  const own = (name: string, extra: Record<string, string> = {}) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{device="${id}"${Object.entries(extra).map(([k, v]) => `,${k}="${v}"`).join('')}}`));
    return line === undefined ? undefined : Number(line.split(' ').pop());
  };
  assert.equal(own('wsblk_client_requests_total', { op: 'write' }), 4);
  assert.equal(own('wsblk_client_requests_total', { op: 'read' }), 2);
  assert.equal(own('wsblk_client_request_bytes_total', { op: 'write' }), 4 * 65536);
  assert.equal(own('wsblk_client_request_bytes_total', { op: 'read' }), 2 * 65536);
  assert.equal(own('wsblk_client_request_duration_seconds_count', { op: 'write' }), 4);
  assert.equal(own('wsblk_client_inflight_requests'), 0);
  const reps = [`ws://127.0.0.1:${p1}/d0`, `ws://127.0.0.1:${p2}/d0`];
  let replicaReads = 0;
  for (const url of reps) {
    const rl = { device: id, replica: url };
    assert.equal(series(text, 'wsblk_client_requests_total', { ...rl, op: 'write' }), 4, `${url} took every write`);
    replicaReads += series(text, 'wsblk_client_requests_total', { ...rl, op: 'read' }) ?? 0;
    assert.equal(series(text, 'wsblk_client_replica_up', { ...rl, state: 'in-sync' }), 1);
    assert.equal(series(text, 'wsblk_client_replica_resync_percent', rl), 100);
    assert.equal(series(text, 'wsblk_client_replica_ejections_total', rl), 0);
    assert.equal(series(text, 'wsblk_client_reconnects_total', rl), 0);
    assert.equal(series(text, 'wsblk_client_replayed_requests_total', rl), 0);
    assert.equal(series(text, 'wsblk_client_replica_outstanding_requests', rl), 0);
  }
  assert.equal(replicaReads, 2, 'each READ went to one replica');

  const ctl = await askControl<{ metrics: string }>(controlPath(env.WSBLK_RUN_DIR, id), { cmd: 'metrics' });
  assert.match(ctl.metrics, /^wsblk_client_requests_total\{device="nbd0",op="write"\} 4$/m, 'the control socket answers the same text');

  const s = await wsblk(['stats', id, '--json'], env);
  assert.equal(s.code, 0, s.stderr);
  const f = JSON.parse(s.stdout);
  assert.equal(f.device, id);
  assert.equal(f.state, 'connected');
  assert.equal(f.inflight, 0);
  assert.equal(f.reconnects, 0);
  for (const k of ['readIops', 'writeIops', 'readMiBs', 'writeMiBs', 'p50Ms', 'p99Ms']) assert.equal(typeof f[k], 'number', k);
  assert.deepEqual(f.replicas.map((x: { url: string; state: string; resyncPercent: number }) => [x.url, x.state, x.resyncPercent]),
    reps.map((u) => [u, 'in-sync', 100]));
  const table = await wsblk(['stats', id], env);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^DEVICE +STATE +R IOPS +W IOPS +R MiB\/s +W MiB\/s +P50 ms +P99 ms +INFLIGHT +RECONNECTS$/m);
  assert.match(table.stdout, /^REPLICA +STATE +RESYNC +OUTSTANDING/m);

  // --watch redraws in place (cursor home, no full clear per frame) until Ctrl-C, then exits 0.
  const w = startProc(process.execPath, [WSBLK, 'stats', id, '--watch'], env);
  t.after(() => { w.child.kill('SIGKILL'); });
  for (let i = 0; i < 100 && (w.output().match(/DEVICE +STATE/g) ?? []).length < 2; i++) await sleep(50);
  w.child.kill('SIGINT');
  assert.equal(await w.exited, 0, w.output());
  const frames = w.output().split('\x1b[H').slice(1);
  assert.ok(frames.length >= 2, `${frames.length} frames`);
  assert.equal(w.output().split('\x1b[2J').length, 2, 'the screen is cleared once, at the start');
  assert.match(frames[0]!, new RegExp(`^wsblk stats ${id} `));
});
