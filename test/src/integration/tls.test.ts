// wss://: the server with --tls-cert/--tls-key, a client that trusts the certificate through
// Node's NODE_EXTRA_CA_CERTS, and one that does not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { freePort, requireTool, startProc, stopProc, tempDir, waitForPort, wsblk, WSBLK } from '../support/procs.js';
import { waitFor } from '../support/server.js';

test('a server with --tls-cert/--tls-key serves wss:// to a client that trusts its certificate, and only to it', { timeout: 60_000 }, async (t) => {
  if (!(await requireTool(t, 'openssl'))) return;
  const dir = tempDir(t);
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const port = await freePort();
  const server = startProc(process.execPath, [WSBLK, 'serve', '--listen', `127.0.0.1:${port}`, '--export', 'd0=memory:16M', '--tls-cert', cert, '--tls-key', key]);
  t.after(() => stopProc(server));
  await waitForPort(port);
  // The port opens before the log line has come through the pipe.
  await waitFor(() => /listening on wss:\/\/127\.0\.0\.1/.test(server.output()), 5000, "the server's \"listening on wss://\" line");
  const env = { WSBLK_RUN_DIR: join(dir, 'run') };

  const untrusted = await wsblk(['connect', `wss://127.0.0.1:${port}/d0`, '--nbd', join(dir, 'a.sock'), '--connect-timeout', '2'], env);
  assert.equal(untrusted.code, 3, untrusted.stderr);
  assert.match(untrusted.stderr, /TLS certificate is not trusted: self.signed certificate \(trust its CA with NODE_EXTRA_CA_CERTS=FILE\)/);
  assert.doesNotMatch(untrusted.stderr, /gave up after/, 'a certificate refusal is final, not retried until the timeout');
  const plain = await wsblk(['connect', `ws://127.0.0.1:${port}/d0`, '--nbd', join(dir, 'c.sock'), '--connect-timeout', '2'], env);
  assert.equal(plain.code, 3, plain.stderr);
  assert.match(plain.stderr, /connection reset \(is it a wss:\/\/ server\?\)/);

  const ok = await wsblk(['connect', `wss://127.0.0.1:${port}/d0`, '--nbd', join(dir, 'b.sock')], { ...env, NODE_EXTRA_CA_CERTS: cert });
  t.after(() => wsblk(['disconnect', '--all'], env));
  assert.equal(ok.code, 0, ok.stderr);
  const list = JSON.parse((await wsblk(['list', '--json'], env)).stdout) as Array<{ state: string; url: string }>;
  assert.equal(list[0]!.state, 'connected');
  assert.equal(list[0]!.url, `wss://127.0.0.1:${port}/d0`);
});
