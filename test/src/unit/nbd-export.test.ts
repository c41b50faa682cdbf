import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { NbdExport } from '@wsblk/client';
import { MemoryTarget } from '../support/memory-target.js';
import { CMD, RawNbdClient, requestHeader } from './nbd-raw-client.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'nbd-export-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const target = () => new MemoryTarget({ size: 1 << 20 });

test('listen refuses a socket path another server answers on', async (t) => {
  const path = join(tempDir(t), 's.sock');
  const first = new NbdExport(target());
  await first.listen(path);
  t.after(() => first.close());
  await assert.rejects(new NbdExport(target()).listen(path), /socket path .* is in use/);
  // The live server is untouched.
  const c = await RawNbdClient.ready(path);
  assert.equal((await c.call(CMD.read, 0, 512)).error, 0);
  c.close();
});

test('listen replaces a stale socket file nobody listens on', async (t) => {
  const path = join(tempDir(t), 's.sock');
  // A socket file left behind by a process that died: bind it in a child that exits at once.
  const r = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.exit(0))`]);
  assert.equal(r.status, 0);
  assert.ok(statSync(path).isSocket());
  const exp = new NbdExport(target());
  await exp.listen(path);
  const c = await RawNbdClient.ready(path);
  assert.equal((await c.call(CMD.read, 0, 512)).error, 0);
  c.close();
  await exp.close();
});

test('listen refuses a path that is not a socket', async (t) => {
  const path = join(tempDir(t), 'file');
  writeFileSync(path, 'keep me');
  await assert.rejects(new NbdExport(target()).listen(path), /not a socket/);
  assert.ok(existsSync(path));
});

test('the socket is private to its owner (mode 0600) and removed on close', async (t) => {
  const path = join(tempDir(t), 's.sock');
  const exp = new NbdExport(target());
  await exp.listen(path);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(exp.socketPath, path);
  await exp.close();
  assert.equal(existsSync(path), false);
});

test('close answers outstanding requests before closing connections', async (t) => {
  const path = join(tempDir(t), 's.sock');
  const tgt = target();
  const exp = new NbdExport(tgt);
  await exp.listen(path);
  const c = await RawNbdClient.ready(path);
  tgt.hold();
  c.request(CMD.read, 9n, 0, 4096);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(exp.connectionCount, 1);
  const closing = exp.close();
  setTimeout(() => tgt.release(), 20);
  const r = await c.readReply();
  assert.equal(r.cookie, 9n);
  assert.equal(r.error, 0);
  assert.equal(await c.closedByServer(), true);
  await closing;
  assert.equal(exp.connectionCount, 0);
});

test('close drops connections still busy after the timeout', async (t) => {
  const path = join(tempDir(t), 's.sock');
  const tgt = target();
  const exp = new NbdExport(tgt, { closeTimeoutMs: 50 });
  await exp.listen(path);
  const c = await RawNbdClient.ready(path);
  tgt.hold();
  c.request(CMD.read, 1n, 0, 4096);
  await new Promise((r) => setTimeout(r, 20));
  await exp.close();
  assert.equal(await c.closedByServer(), true);
  tgt.release(); // the late answer finds no socket and is dropped
  await new Promise((r) => setImmediate(r));
});

test('a connection mid-handshake does not keep close waiting', async (t) => {
  const path = join(tempDir(t), 's.sock');
  const exp = new NbdExport(target());
  await exp.listen(path);
  const c = await RawNbdClient.connect(path);
  await c.readGreeting();
  await exp.close();
  assert.equal(await c.closedByServer(), true);
});

test('close while a WRITE payload is half received: the connection ends, the rest is dropped, nothing else is touched', async (t) => {
  const path = join(tempDir(t), 's.sock');
  const tgt = new MemoryTarget({ size: 4 << 20 });
  const exp = new NbdExport(tgt, { closeTimeoutMs: 200 });
  await exp.listen(path);
  const c = await RawNbdClient.ready(path);
  // Header and a quarter of a 1 MiB payload: the export now reads the rest straight into the
  // payload's buffer.
  const payload = Buffer.alloc(1 << 20, 0xab);
  const header = requestHeader(CMD.write, 7n, 0, payload.length);
  c.write(Buffer.concat([header, payload.subarray(0, 256 << 10)]));
  await new Promise((r) => setTimeout(r, 50));
  const closing = exp.close();
  c.write(payload.subarray(256 << 10));
  await closing;
  assert.equal(await c.closedByServer(), true);
  // The half-received WRITE never reached the target.
  assert.equal(tgt.read(0, 4096).equals(Buffer.alloc(4096)), true);
  assert.equal(existsSync(path), false);
});
