// dupFd (native/csrc/sockio.cc): the duplicate the storage server re-opens upgrade sockets on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, connect, Socket, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { dupFd } from '@wsblk/native';

/** O_CLOEXEC of an open descriptor, from /proc/self/fdinfo (flags are octal). */
function cloexec(fd: number): boolean {
  const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!;
  return (parseInt(flags, 8) & 0o2000000) !== 0;
}

test('dupFd: a new close-on-exec descriptor for the same connection, which lives on when the original socket is destroyed', async (t) => {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.after(() => srv.close());
  const accepted = once(srv, 'connection');
  const client = connect((srv.address() as AddressInfo).port, '127.0.0.1');
  t.after(() => client.destroy());
  const [original] = (await accepted) as [Socket];
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
