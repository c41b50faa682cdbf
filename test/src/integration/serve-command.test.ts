// `wsblk serve` as a user runs it: signals, a wrong command line, and what a refused client is told.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CloseCode } from '@wsblk/shared';
import { RawClient } from '../support/raw-client.js';
import { tempDir, wsblk } from '../support/procs.js';
import { serve } from '../support/serve-process.js';

test('SIGHUP drains like SIGTERM: clients get 1001, the process exits 0', async (t) => {
  const s = await serve(t, ['--export', 'disk0=memory:1M']);
  const c = await RawClient.connect(s.url('disk0'));
  await c.hello();
  s.proc.child.kill('SIGHUP');
  const closed = await c.closedWithin(5000);
  assert.equal(closed.code, CloseCode.GoingAway);
  assert.equal(closed.reason, 'server shutting down');
  assert.equal(await s.proc.exited, 0, s.proc.output());
  assert.match(s.proc.output(), /SIGHUP: finishing in-flight requests and flushing/);
});

test('a duplicate --export name is a usage error: exit 2, one line', async () => {
  const r = await wsblk(['serve', '--listen', '127.0.0.1:0', '--export', 'a=memory:1M', '--export', 'b=memory:1M', '--export', 'a=memory:2M']);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /--export a: the export name is given twice/);
});

test('a missing token file, TLS certificate or key names its option: exit 2, one line', async (t) => {
  const dir = tempDir(t);
  const pem = join(dir, 'present.pem');
  writeFileSync(pem, 'not used\n');
  for (const [flag, args] of [
    ['--token-file', ['--token-file', join(dir, 'tokens')]],
    ['--tls-cert', ['--tls-cert', join(dir, 'cert.pem'), '--tls-key', pem]],
    ['--tls-key', ['--tls-cert', pem, '--tls-key', join(dir, 'key.pem')]],
  ] as const) {
    const r = await wsblk(['serve', '--listen', '127.0.0.1:0', '--export', 'a=memory:1M', ...args]);
    assert.equal(r.code, 2, `${flag}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${flag} \\S+: no such file`));
  }
});

test('a 404 lists only the exports the token may open', async (t) => {
  const dir = tempDir(t);
  const tokens = join(dir, 'tokens');
  writeFileSync(tokens, 'token-for-disk0 disk0 rw\ntoken-for-all * rw\n');
  const s = await serve(t, ['--export', 'disk0=memory:1M', '--export', 'secret1=memory:1M', '--token-file', tokens]);
  const one = await RawClient.refusal(s.url('nope'), { token: 'token-for-disk0' });
  assert.equal(one.status, 404);
  assert.equal(one.body, "no export 'nope' (exports: disk0)\n");
  const all = await RawClient.refusal(s.url('nope'), { token: 'token-for-all' });
  assert.equal(all.body, "no export 'nope' (exports: disk0, secret1)\n");
  const unknown = await RawClient.refusal(s.url('nope'), { token: 'not-a-token' });
  assert.equal(unknown.status, 401, 'an unknown token learns no names');
  assert.doesNotMatch(unknown.body, /disk0|secret1/);
});
