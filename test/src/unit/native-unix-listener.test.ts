// UnixListener (native/csrc/unix_listener.cc): accept on the libuv loop, fds for net.Socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnixListener } from '@wsblk/native';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'unix-listener-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('each client arrives as an fd that net.Socket wraps; bytes flow both ways', async (t) => {
  const path = join(tempDir(t), 'l.sock');
  const fds: number[] = [];
  const l = new UnixListener(path, {
    connection: (fd) => {
      fds.push(fd);
      const s = new Socket({ fd, readable: true, writable: true });
      s.on('data', (d) => s.write(Buffer.concat([Buffer.from('echo:'), d])));
    },
    error: (e) => assert.fail(e),
  });
  t.after(() => l.close());
  for (let i = 0; i < 3; i++) {
    const answer = await new Promise<string>((resolve, reject) => {
      const c = connect(path, () => c.write(`hello ${i}`));
      c.on('data', (d) => { resolve(d.toString()); c.destroy(); });
      c.on('error', reject);
    });
    assert.equal(answer, `echo:hello ${i}`);
  }
  assert.equal(fds.length, 3);
});

test('bind errors are thrown with their code; close stops accepting', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'taken');
  writeFileSync(file, 'x');
  assert.throws(() => new UnixListener(file, { connection: () => {}, error: () => {} }), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE' && /cannot listen on/.test(e.message));
  assert.throws(() => new UnixListener(join(dir, 'x'.repeat(200)), { connection: () => {}, error: () => {} }), (e: NodeJS.ErrnoException) => e.code === 'ENAMETOOLONG');
  assert.throws(() => new UnixListener('/nonexistent-dir/s.sock', { connection: () => {}, error: () => {} }), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  const path = join(dir, 'l.sock');
  let accepted = 0;
  const l = new UnixListener(path, { connection: (fd) => { accepted++; new Socket({ fd }).destroy(); }, error: () => {} });
  l.close();
  l.close(); // twice is harmless
  const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
    const c = connect(path);
    c.on('error', resolve);
    c.on('connect', () => resolve(Object.assign(new Error('connected'), { code: 'CONNECTED' })));
  });
  assert.equal(err.code, 'ECONNREFUSED');
  assert.equal(accepted, 0);
});
