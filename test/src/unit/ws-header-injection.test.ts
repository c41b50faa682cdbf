// Line breaks in the WebSocket handshake's headers, over real loopback sockets: a header value
// of ours with CR or LF (a token, say) is refused before anything is sent, so it cannot inject
// a header; a 101 whose head holds a bare CR or LF is refused; the server refuses to write a
// subprotocol with a line break into its 101.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { WsHandshakeError, acceptKey, acceptUpgrade, wsConnect } from '@wsblk/shared';

const PROTOCOL = 'wsblk.v1';

/** A raw TCP server that records every request head and answers it with `answer(key)`, if given. */
async function rawServer(answer?: (key: string) => string) {
  const server = createServer();
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    let head = '';
    s.on('data', (c: Buffer) => {
      head += c.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      requests.push(head);
      const key = /sec-websocket-key: (\S+)/i.exec(head)?.[1] ?? '';
      if (answer) s.write(answer(key));
    });
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const close = () => {
    for (const s of sockets) s.destroy();
    server.close();
  };
  return { url: new URL(`ws://127.0.0.1:${port}/disk`), requests, close };
}

const good101 = (key: string, extra = '') =>
  `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n${extra}Sec-WebSocket-Protocol: ${PROTOCOL}\r\n\r\n`;

/** wsConnect's error (or 'connected', closing the connection). */
async function outcome(opts: Parameters<typeof wsConnect>[0]): Promise<WsHandshakeError | 'connected'> {
  try {
    const conn = await wsConnect(opts);
    conn.terminate();
    return 'connected';
  } catch (e) {
    assert.ok(e instanceof WsHandshakeError, String(e));
    return e;
  }
}

test('a token with CR LF cannot inject a header: the connect fails before a byte is sent', async () => {
  const srv = await rawServer((key) => good101(key));
  try {
    for (const token of ['abc\r\nX-Injected: 1', 'abc\nX-Injected: 1', 'abc\rX-Injected: 1', 'abc\0']) {
      const r = await outcome({ url: srv.url, protocol: PROTOCOL, headers: { authorization: `Bearer ${token}` }, maxMessage: 1024, timeoutMs: 1000 });
      assert.ok(r instanceof WsHandshakeError, `${JSON.stringify(token)}: refused`);
      assert.match(r.message, /authorization holds a CR, LF or NUL/);
    }
    for (const name of ['X-Bad\r\nX-Injected', 'X Bad', 'X-Bad:', '']) {
      const r = await outcome({ url: srv.url, protocol: PROTOCOL, headers: { [name]: 'v' }, maxMessage: 1024, timeoutMs: 1000 });
      assert.ok(r instanceof WsHandshakeError, `${JSON.stringify(name)}: refused`);
      assert.match(r.message, /is not an HTTP token/);
    }
    const r = await outcome({ url: srv.url, protocol: `${PROTOCOL}\r\nX-Injected: 1`, maxMessage: 1024, timeoutMs: 1000 });
    assert.ok(r instanceof WsHandshakeError);
    assert.match(r.message, /Sec-WebSocket-Protocol holds/);
    await new Promise((res) => setTimeout(res, 50));
    assert.deepEqual(srv.requests, [], 'nothing reached the server');
    // The same server and options without the line break connect.
    assert.equal(await outcome({ url: srv.url, protocol: PROTOCOL, headers: { authorization: 'Bearer abc' }, maxMessage: 1024, timeoutMs: 1000 }), 'connected');
    assert.equal(srv.requests.length, 1);
    assert.match(srv.requests[0]!, /\r\nauthorization: Bearer abc\r\n/);
  } finally {
    srv.close();
  }
});

for (const [what, line] of [['bare LF', 'X-Note: a\nX-Injected: b\r\n'], ['bare CR', 'X-Note: a\rX-Injected: b\r\n'], ['LF-only line end', 'X-Note: a\n']] as const) {
  test(`a 101 with a ${what} in a header is refused`, async () => {
    const srv = await rawServer((key) => good101(key, line));
    try {
      const r = await outcome({ url: srv.url, protocol: PROTOCOL, maxMessage: 1024, timeoutMs: 2000 });
      assert.ok(r instanceof WsHandshakeError, 'refused');
      assert.match(r.message, /bare CR or LF/);
    } finally {
      srv.close();
    }
  });
}

test('acceptUpgrade refuses to write a subprotocol holding a line break, and writes nothing', () => {
  const req = { headers: { 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } } as unknown as IncomingMessage;
  const socket = new PassThrough();
  assert.throws(() => acceptUpgrade(req, socket, Buffer.alloc(0), 'x\r\nX-Injected: 1', { maxMessage: 1024 }), /CR, LF or NUL/);
  assert.equal(socket.read(), null, 'nothing written');
});
