// dupFd and sendv (native/csrc/sockio.cc): the duplicate the storage server re-opens upgrade
// sockets on, and the non-blocking sendmsg WebSocket connections write frames with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, connect, Socket, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import { dupFd, sendv } from '@wsblk/native';

/** O_CLOEXEC of an open descriptor, from /proc/self/fdinfo (flags are octal). */
function cloexec(fd: number): boolean {
  const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!;
  return (parseInt(flags, 8) & 0o2000000) !== 0;
}

/** A connected loopback TCP pair: the accepted socket and the client. */
async function tcpPair(t: TestContext): Promise<{ server: Socket; client: Socket }> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.after(() => srv.close());
  const accepted = once(srv, 'connection');
  const client = connect((srv.address() as AddressInfo).port, '127.0.0.1');
  await once(client, 'connect');
  const [server] = (await accepted) as [Socket];
  t.after(() => { client.destroy(); server.destroy(); });
  return { server, client };
}

test('dupFd: a new close-on-exec descriptor for the same connection, which lives on when the original socket is destroyed', async (t) => {
  const { server: original, client } = await tcpPair(t);
  const fd = (original as Socket & { _handle: { fd: number } })._handle.fd;
  const dup = dupFd(fd);
  assert.ok(dup >= 3 && dup !== fd, `a new descriptor (got ${dup}, original ${fd})`);
  assert.equal(cloexec(dup), true, 'close-on-exec');
  original.destroy();
  const s = new Socket({ fd: dup, readable: true, writable: true });
  t.after(() => s.destroy());
  client.write('ping');
  const [got] = (await once(s, 'data')) as [Buffer];
  assert.equal(got.toString(), 'ping');
  s.write('pong');
  const [back] = (await once(client, 'data')) as [Buffer];
  assert.equal(back.toString(), 'pong');
});

test('dupFd: a bad descriptor gives -EBADF, a non-number a TypeError', () => {
  assert.equal(dupFd(987654), -9);
  assert.throws(() => dupFd('3' as unknown as number), TypeError);
});

test('sendv: the buffers go out in order in one call; with the peer not reading it takes part, then -EAGAIN, never blocking', async (t) => {
  const { server, client } = await tcpPair(t);
  const fd = (client as Socket & { _handle: { fd: number } })._handle.fd;
  const got: Buffer[] = [];
  server.on('data', (d: Buffer) => got.push(d));
  assert.equal(sendv(fd, [Buffer.from('ab'), Buffer.alloc(0), Buffer.from('cde')]), 5);
  while (Buffer.concat(got).length < 5) await once(server, 'data');
  assert.equal(Buffer.concat(got).toString(), 'abcde');

  server.pause();
  const chunk = Buffer.alloc(1 << 20, 7);
  let sent = 0;
  let r = 0;
  for (let i = 0; i < 256 && (r = sendv(fd, [chunk])) > 0; i++) sent += r;
  assert.equal(r, -11, `EAGAIN once the socket buffers are full (after ${sent} bytes)`);
  assert.ok(sent > 0 && sent < 256 << 20, `${sent} bytes taken`);
});

test('sendv: a bad descriptor gives -EBADF, a closed peer -EPIPE (no SIGPIPE), wrong arguments a TypeError', async (t) => {
  assert.equal(sendv(987654, [Buffer.from('x')]), -9);
  assert.throws(() => sendv(3, 'x' as unknown as Buffer[]), TypeError);
  assert.throws(() => sendv(3, ['x' as unknown as Buffer]), TypeError);
  const { server, client } = await tcpPair(t);
  const fd = (client as Socket & { _handle: { fd: number } })._handle.fd;
  server.destroy();
  await once(client, 'end');
  client.end();
  let r = 0;
  for (let i = 0; i < 100 && r >= 0; i++) r = sendv(fd, [Buffer.from('after the end')]);
  assert.ok(r === -32 || r === -104, `EPIPE or ECONNRESET, got ${r}`);
});
