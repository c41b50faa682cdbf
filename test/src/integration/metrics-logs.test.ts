// Logs: --log-format json writes one JSON object per line {time, level, scope, msg} on stderr,
// for serve and for a --foreground connect daemon; --log-level drops what is below it; both
// are in --help.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { WSBLK, sleep, startProc, stopProc, tempDir, wsblk } from '../support/procs.js';
import { serve } from '../support/serve-process.js';

/** Every line of `out` as a JSON log record (fails on any other line). */
function records(out: string): Array<{ time: string; level: string; scope: string; msg: string }> {
  return out.trim().split('\n').map((line) => {
    const r = JSON.parse(line);
    assert.deepEqual(Object.keys(r), ['time', 'level', 'scope', 'msg'], line);
    assert.ok(!Number.isNaN(Date.parse(r.time)), line);
    assert.ok(['debug', 'info', 'warn', 'error'].includes(r.level), line);
    return r;
  });
}

test('serve --log-format json --log-level debug: JSON lines on stderr; SIGTERM still drains', async (t) => {
  const s = await serve(t, ['--export', 'disk0=memory:1M', '--log-format', 'json', '--log-level', 'debug']);
  await stopProc(s.proc);
  const recs = records(s.proc.output());
  assert.ok(recs.some((r) => r.level === 'info' && r.scope === 'serve' && /^listening on ws:\/\/127\.0\.0\.1:\d+\/ \(exports: disk0\)$/.test(r.msg)), s.proc.output());
  assert.ok(recs.some((r) => r.scope === 'serve' && r.msg === 'SIGTERM: finishing in-flight requests and flushing'));
  assert.equal(recs.at(-1)!.msg, 'stopped');
});

test('--log-level warn drops info; WSBLK_LOG_FORMAT=json works without the option', async (t) => {
  const s = await serve(t, ['--export', 'disk0=memory:1M', '--log-level', 'warn'], { WSBLK_LOG_FORMAT: 'json' });
  await stopProc(s.proc);
  assert.equal(s.proc.output(), '', 'no record at info');
  const bad = await wsblk(['serve', '--export', 'd=memory:1M', '--log-level', 'loud']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /argument 'loud' is invalid\. Allowed choices are debug, info, warn, error/);
});

test('connect --foreground --log-format json: the daemon logs JSON lines to stderr', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const s = await serve(t, ['--export', 'd0=memory:1M']);
  const env = { WSBLK_RUN_DIR: join(dir, 'run') };
  const d = startProc(process.execPath, [WSBLK, 'connect', s.url('d0'), '--nbd', join(dir, 'd0.sock'), '--foreground', '--log-format', 'json'], env);
  t.after(() => { d.child.kill('SIGKILL'); });
  for (let i = 0; i < 200 && !/serving/.test(d.output()); i++) await sleep(50);
  await stopProc(d);
  const lines = d.output().trim().split('\n');
  assert.equal(lines.filter((l) => /^nbd\+unix:\/\/\/\?socket=/.test(l)).length, 1, 'the URI on stdout');
  const rest = lines.filter((l) => !l.startsWith('nbd+unix:'));
  const recs = records(rest.join('\n'));
  assert.ok(recs.some((r) => r.scope === 'daemon' && /: nbd\+unix:.* serving ws:\/\/127\.0\.0\.1:\d+\/d0 \(1048576 bytes\)$/.test(r.msg)), rest.join('\n'));
  assert.ok(recs.some((r) => r.scope === 'daemon' && r.msg.endsWith(': stopped')));
});

test('--help of serve and connect documents the log options', async () => {
  for (const cmd of ['serve', 'connect']) {
    const h = await wsblk([cmd, '--help']);
    assert.match(h.stdout, /--log-level <level>\s+least severe log records written \(choices:\s+"debug", "info", "warn", "error"\)/);
    assert.match(h.stdout, /--log-format <format>\s+log records as text lines or JSON lines\s+\(choices:\s+"text", "json"\)/);
    assert.match(h.stdout, /JSON lines \{"time","level","scope","msg"\}/);
  }
  assert.match((await wsblk(['serve', '--help'])).stdout, /GET \/metrics answers Prometheus text/);
  const c = (await wsblk(['connect', '--help'])).stdout;
  assert.match(c, /--metrics-listen <host:port>/);
  assert.match(c, /--foreground logs to stderr/);
  assert.match((await wsblk(['stats', '--help'])).stdout, /--watch +redraw every second until Ctrl-C/);
});
