// The WebSocket layer (shared/src/ws/: frame reader and writer, conn, handshakes) over real sockets on
// 127.0.0.1: our client against the `ws` package's server, the `ws` client against our server
// (an http server using upgradeProblem/acceptUpgrade), the handshake refusals wsConnect reports,
// our two ends together, and the close handshake.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import WebSocket, { WebSocketServer } from 'ws';
import {
  WS_CLOSE, WsHandshakeError, acceptKey, acceptUpgrade, upgradeProblem, wsConnect,
  type WsConn, type WsConnectOptions,
} from '@wsblk/shared';
import { dupFd, sendv } from '@wsblk/native';
import { between, bytes, rng } from '../support/random.js';

const KiB = 1024;
const MiB = 1 << 20;
const PROTOCOL = 'wsblk.v1';
const SIZES = [0, 3, 70 * KiB, 4 * MiB];

// --- helpers -----------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Rejects if `p` has not settled within `ms` (so a hang fails the test instead of stalling it). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms); });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Asserts two buffers are equal without dumping megabytes on failure. */
function sameBytes(got: Buffer, want: Buffer, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  if (!got.equals(want)) {
    let at = 0;
    while (got[at] === want[at]) at++;
    assert.fail(`${what}: differs first at byte ${at} of ${want.length}`);
  }
}

/** Messages that arrive at one end, and a way to wait for the n-th. */
class Inbox {
  readonly items: Array<{ data: Buffer; binary: boolean }> = [];
  private waiters: Array<() => void> = [];
  add(data: Buffer, binary: boolean): void {
    this.items.push({ data, binary });
    for (const w of this.waiters.splice(0)) w();
  }
  async count(n: number, ms = 10_000): Promise<void> {
    const deadline = performance.now() + ms;
    while (this.items.length < n) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${this.items.length} of ${n} messages within ${ms} ms`);
      await within(new Promise<void>((r) => this.waiters.push(r)), left, `message ${this.items.length + 1} of ${n}`);
    }
  }
}

/**
 * What a WsConn reported: messages, pongs and its one close. Sets the handlers, then calls
 * start() (a WsConn delivers nothing before it) unless `start` is false.
 */
function watch(conn: WsConn, { start = true }: { start?: boolean } = {}) {
  const w = {
    inbox: new Inbox(),
    pongs: 0,
    closes: [] as Array<{ code: number; reason: string }>,
    closed: undefined as unknown as Promise<{ code: number; reason: string }>,
  };
  w.closed = new Promise((resolve) => {
    conn.onclose = (code, reason) => {
      w.closes.push({ code, reason });
      resolve({ code, reason });
    };
  });
  conn.onmessage = (data, binary) => w.inbox.add(data, binary);
  conn.onpong = () => { w.pongs++; };
  if (start) conn.start();
  return w;
}

/** Messages that arrive at a `ws` socket. */
function watchWs(ws: WebSocket) {
  const inbox = new Inbox();
  ws.on('message', (data, isBinary) => inbox.add(data as Buffer, isBinary));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  return { inbox, closed };
}

/** Tracks the sockets a server accepted, to cut them all at the end. */
function trackSockets(server: NetServer): Set<Socket> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return sockets;
}

async function listen(server: NetServer): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function shut(server: NetServer, sockets: Set<Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createNetServer();
  const port = await listen(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function refuse(socket: Duplex, status: number, text: string, body: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

/** An http server that upgrades with upgradeProblem/acceptUpgrade, answering 400 to bad upgrades. */
/** reads: 'onread' (the default, as the storage server does) passes the native dupFd to acceptUpgrade. */
async function ourServer(onConn: (conn: WsConn, req: IncomingMessage) => void, opts: { maxMessage?: number; closeTimeoutMs?: number; reads?: 'data' | 'onread' } = {}) {
  const http = createHttpServer((_req, res) => { res.writeHead(426, { 'content-type': 'text/plain' }).end('WebSocket only'); });
  const sockets = trackSockets(http);
  const problems: string[] = [];
  /** Bytes that came with each upgrade request (`head`). */
  const heads: number[] = [];
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {});
    heads.push(head.length);
    const problem = upgradeProblem(req);
    if (problem) {
      problems.push(problem);
      return refuse(socket, 400, 'Bad Request', problem);
    }
    // As the storage server does: re-opened with onread, frames sent with sendv (levers 16, 19);
    // 'data' keeps http's socket and socket.write alone.
    const viaDup = (opts.reads ?? 'onread') === 'onread' ? { dupFd, sendv } : {};
    onConn(acceptUpgrade(req, socket, head, PROTOCOL, { maxMessage: opts.maxMessage ?? 8 * MiB, closeTimeoutMs: opts.closeTimeoutMs ?? 1000, ...viaDup }), req);
  });
  const port = await listen(http);
  return { port, problems, heads, url: new URL(`ws://127.0.0.1:${port}/disk0`), close: () => shut(http, sockets) };
}

/** A `ws` WebSocketServer that picks our subprotocol. */
async function wsServer() {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (protocols) => (protocols.has(PROTOCOL) ? PROTOCOL : false) });
  await once(wss, 'listening');
  const port = (wss.address() as AddressInfo).port;
  return {
    wss,
    url: new URL(`ws://127.0.0.1:${port}/disk0`),
    next: () => new Promise<{ ws: WebSocket; req: IncomingMessage }>((resolve) => wss.once('connection', (ws, req) => resolve({ ws, req }))),
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
}

/**
 * A TCP server that reads one HTTP request head and lets `answer` write whatever it likes.
 * Records each request head and whether its socket has closed.
 */
async function rawHttpServer(answer: (socket: Socket, head: string, key: string) => void) {
  const server = createNetServer();
  const sockets = trackSockets(server);
  const requests: string[] = [];
  const socketClosed: Array<Promise<unknown>> = [];
  server.on('connection', (socket: Socket) => {
    socket.on('error', () => {});
    socketClosed.push(once(socket, 'close'));
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const head = buf.toString('latin1', 0, end);
      requests.push(head);
      const key = /^sec-websocket-key:\s*(.*)$/im.exec(head)?.[1]?.trim() ?? '';
      answer(socket, head, key);
    };
    socket.on('data', onData);
  });
  const port = await listen(server);
  return { port, requests, socketClosed, url: new URL(`ws://127.0.0.1:${port}/disk0`), close: () => shut(server, sockets) };
}

function connectOpts(url: URL, over: Partial<WsConnectOptions> = {}): WsConnectOptions {
  // sendv as RemoteDisk passes it (fake-socket tests in ws-frames cover socket.write alone).
  return { url, protocol: PROTOCOL, maxMessage: 8 * MiB, timeoutMs: 5000, closeTimeoutMs: 1000, sendv, ...over };
}

/**
 * A `ws` server (wsServer()) with our client connected to it (connectOpts(srv.url, over)): both
 * ends of the connection, and close() to cut the client and shut the server. If the connect or
 * the server's connection does not come, cleans up before rethrowing.
 */
async function connectToWsServer(over: Partial<WsConnectOptions> = {}) {
  const srv = await wsServer();
  const next = srv.next();
  let conn: WsConn | undefined;
  try {
    conn = await wsConnect(connectOpts(srv.url, over));
    const { ws, req } = await within(next, 5000, 'connection');
    const c = conn;
    return { srv, conn: c, ws, req, close: async () => { c.terminate(); await srv.close(); } };
  } catch (e) {
    conn?.terminate();
    await srv.close();
    throw e;
  }
}

/** Expects wsConnect to reject with a WsHandshakeError; returns it. */
async function refused(opts: WsConnectOptions): Promise<WsHandshakeError> {
  let conn: WsConn | undefined;
  try {
    conn = await within(wsConnect(opts), 10_000, 'wsConnect');
  } catch (e) {
    assert.ok(e instanceof WsHandshakeError, `expected a WsHandshakeError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    return e;
  }
  conn.start();
  conn.terminate();
  assert.fail('wsConnect resolved; expected a refusal');
}

/** Sends one HTTP request over a plain socket and returns everything the server answered. */
async function rawExchange(port: number, request: string): Promise<string> {
  const s = netConnect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.on('error', () => {});
  s.write(request);
  const closed = once(s, 'close');
  try {
    await within(closed, 5000, 'the server closing after its answer');
  } finally {
    s.destroy();
  }
  return Buffer.concat(chunks).toString('latin1');
}

/** A client frame (masked with a zero key unless `key` is given). */
function clientFrame(opcode: number, payload: Buffer, opts: { fin?: boolean; masked?: boolean; key?: number } = {}): Buffer {
  const masked = opts.masked ?? true;
  const len = payload.length;
  const lenBytes = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const hl = 2 + lenBytes + (masked ? 4 : 0);
  const out = Buffer.alloc(hl + len);
  out[0] = ((opts.fin ?? true) ? 0x80 : 0) | opcode;
  out[1] = (masked ? 0x80 : 0) | (lenBytes === 0 ? len : lenBytes === 2 ? 126 : 127);
  if (lenBytes === 2) out.writeUInt16BE(len, 2);
  else if (lenBytes === 8) out.writeBigUInt64BE(BigInt(len), 2);
  const key = Buffer.alloc(4);
  key.writeUInt32BE((opts.key ?? 0) >>> 0, 0);
  if (masked) key.copy(out, 2 + lenBytes);
  for (let i = 0; i < len; i++) out[hl + i] = payload[i]! ^ (masked ? key[i & 3]! : 0);
  return out;
}

/** The complete frames in a byte stream (masked payloads unmasked). */
function framesIn(stream: Buffer): Array<{ opcode: number; payload: Buffer }> {
  const out: Array<{ opcode: number; payload: Buffer }> = [];
  let pos = 0;
  while (pos + 2 <= stream.length) {
    const opcode = stream[pos]! & 0x0f;
    const masked = (stream[pos + 1]! & 0x80) !== 0;
    let len = stream[pos + 1]! & 0x7f;
    let hl = 2;
    if (len === 126) { len = stream.readUInt16BE(pos + 2); hl = 4; } else if (len === 127) { len = Number(stream.readBigUInt64BE(pos + 2)); hl = 10; }
    const key = masked ? stream.subarray(pos + hl, pos + hl + 4) : null;
    if (masked) hl += 4;
    if (pos + hl + len > stream.length) break;
    const payload = Buffer.from(stream.subarray(pos + hl, pos + hl + len));
    if (key) for (let i = 0; i < len; i++) payload[i] = payload[i]! ^ key[i & 3]!;
    out.push({ opcode, payload });
    pos += hl + len;
  }
  return out;
}

/** The close code in the first close frame of a stream of frames, or undefined. */
function closeCodeIn(stream: Buffer): number | undefined {
  const close = framesIn(stream).find((f) => f.opcode === 8);
  if (!close) return undefined;
  return close.payload.length >= 2 ? close.payload.readUInt16BE(0) : WS_CLOSE.noStatus;
}

/** The 101 answer for a request key, with the given extra header lines. */
const switching = (key: string, lines: string[]) => ['HTTP/1.1 101 Switching Protocols', ...lines.map((l) => l.replace('$ACCEPT', acceptKey(key)))].join('\r\n') + '\r\n\r\n';

/** The header lines of a good 101. */
const GOOD_101 = ['Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Accept: $ACCEPT', `Sec-WebSocket-Protocol: ${PROTOCOL}`];

/** A good upgrade request for our server. */
const upgradeRequest = () =>
  `GET /disk0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${PROTOCOL}\r\n\r\n`;

/** Our server, with its accepted connections (not started) handed out in order by next(). */
async function ourServerQueue(opts: { maxMessage?: number; closeTimeoutMs?: number } = {}) {
  const ready: WsConn[] = [];
  const waiting: Array<(c: WsConn) => void> = [];
  const srv = await ourServer((conn) => {
    const w = waiting.shift();
    if (w) w(conn);
    else ready.push(conn);
  }, opts);
  const next = () => within(ready.length ? Promise.resolve(ready.shift()!) : new Promise<WsConn>((r) => waiting.push(r)), 5000, 'accepted');
  return { ...srv, next };
}

/**
 * A raw TCP client of our server: writes the upgrade request (and `extra` in the same write),
 * waits for the 101. after(): the bytes the server sent after its 101.
 */
async function rawClient(port: number, extra?: Buffer) {
  const s = netConnect({ host: '127.0.0.1', port });
  s.on('error', () => {});
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  s.write(extra ? Buffer.concat([Buffer.from(upgradeRequest()), extra]) : upgradeRequest());
  const all = () => Buffer.concat(chunks);
  await within((async () => { while (!all().includes('\r\n\r\n')) await sleep(5); })(), 5000, '101');
  assert.match(all().toString('latin1', 0, 13), /^HTTP\/1\.1 101/);
  const after = () => {
    const a = all();
    return a.subarray(a.indexOf('\r\n\r\n') + 4);
  };
  return { s, closed, after };
}

/**
 * A raw TCP server for one client: answers the upgrade with a good 101 (and `extra` in the same
 * write). socket(): its end of the connection; received(): what the client sent after its request.
 */
async function rawPeer(extra?: Buffer) {
  let resolveSocket!: (s: Socket) => void;
  const accepted = new Promise<Socket>((r) => { resolveSocket = r; });
  const received: Buffer[] = [];
  const srv = await rawHttpServer((socket, _head, key) => {
    socket.on('data', (c: Buffer) => received.push(c));
    socket.write(Buffer.concat([Buffer.from(switching(key, GOOD_101)), extra ?? Buffer.alloc(0)]));
    resolveSocket(socket);
  });
  return { srv, socket: () => within(accepted, 5000, 'upgrade request'), received: () => Buffer.concat(received) };
}

/** A frame as a server sends it (not masked). */
const serverFrame = (opcode: number, payload: Buffer) => clientFrame(opcode, payload, { masked: false });

/** A close frame payload: the code, then the reason bytes. */
function closePayload(code: number, reason: Buffer | string = ''): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code, 0);
  return Buffer.concat([b, Buffer.from(reason)]);
}

/**
 * Sends a raw close frame with `payload` to our server (from a raw client) and to our client
 * (from a raw server). For each: what onclose reported, and the code of the close frame it sent.
 */
async function rawCloseBothWays(payload: Buffer) {
  // To our server.
  const srv = await ourServerQueue();
  let server: { code: number; reason: string; sent: number | undefined };
  try {
    const c = await rawClient(srv.port);
    const conn = await srv.next();
    const mine = watch(conn);
    c.s.write(clientFrame(8, payload, { key: 0x11223344 }));
    const got = await within(mine.closed, 5000, 'server onclose');
    await within(c.closed, 5000, 'the server ending the connection');
    server = { ...got, sent: closeCodeIn(c.after()) };
    c.s.destroy();
  } finally {
    await srv.close();
  }
  // To our client.
  const peer = await rawPeer();
  let client: { code: number; reason: string; sent: number | undefined };
  let conn: WsConn | undefined;
  try {
    conn = await wsConnect(connectOpts(peer.srv.url));
    const mine = watch(conn);
    const sock = await peer.socket();
    sock.write(serverFrame(8, payload));
    const got = await within(mine.closed, 5000, 'client onclose');
    await within(Promise.all(peer.srv.socketClosed), 5000, 'the connection closed');
    client = { ...got, sent: closeCodeIn(peer.received()) };
  } finally {
    conn?.terminate();
    await peer.srv.close();
  }
  return { server, client };
}

// --- (a) our client, ws server -----------------------------------------------------------------

describe('wsConnect against a ws WebSocketServer', () => {
  test('messages of 0 B, 3 B, 70 KiB and 4 MiB both ways, byte-exact; headers and subprotocol as sent', async () => {
    const { conn, ws, req, close } = await connectToWsServer({ headers: { authorization: 'Bearer t0ken' } });
    try {
      assert.equal(ws.protocol, PROTOCOL);
      assert.equal(req.headers.authorization, 'Bearer t0ken');
      assert.equal(req.headers['sec-websocket-version'], '13');
      assert.equal(req.url, '/disk0');
      const mine = watch(conn);
      const theirs = watchWs(ws);

      // ws server -> our client.
      const down = SIZES.map((n, i) => bytes(n, 100 + i));
      for (const b of down) ws.send(b, { binary: true });
      await mine.inbox.count(down.length);
      down.forEach((b, i) => {
        sameBytes(mine.inbox.items[i]!.data, b, `to the client, message ${i} (${b.length} B)`);
        assert.equal(mine.inbox.items[i]!.binary, true);
      });
      // A text message is reported as such.
      ws.send('text here');
      await mine.inbox.count(down.length + 1);
      assert.equal(mine.inbox.items[down.length]!.binary, false);
      assert.equal(mine.inbox.items[down.length]!.data.toString(), 'text here');

      // Our client -> ws server: single parts, and a message sent as several parts.
      const up = SIZES.map((n, i) => bytes(n, 200 + i));
      for (const b of up) conn.send([b]);
      const parts = [Buffer.from('hdr'), bytes(3 * MiB, 300), Buffer.alloc(0), bytes(1500, 301), bytes(10, 302)];
      conn.send(parts);
      conn.send([bytes(2000, 303), bytes(5, 304)]);
      await theirs.inbox.count(up.length + 2);
      up.forEach((b, i) => {
        sameBytes(theirs.inbox.items[i]!.data, b, `to the ws server, message ${i} (${b.length} B)`);
        assert.equal(theirs.inbox.items[i]!.binary, true);
      });
      sameBytes(theirs.inbox.items[up.length]!.data, Buffer.concat(parts), 'message sent in parts');
      sameBytes(theirs.inbox.items[up.length + 1]!.data, Buffer.concat([bytes(2000, 303), bytes(5, 304)]), 'message of a large first part');
      // The buffers handed to onmessage earlier still hold their bytes.
      down.forEach((b, i) => sameBytes(mine.inbox.items[i]!.data, b, `kept message ${i}`));
    } finally {
      await close();
    }
  });

  test('the ws server\'s ping gets a pong with its payload; our ping gets the ws server\'s pong', async () => {
    const { conn, ws, close } = await connectToWsServer();
    try {
      const mine = watch(conn);
      const pong = once(ws, 'pong');
      ws.ping(Buffer.from('heartbeat 1'));
      const [data] = await within(pong, 5000, 'pong at the ws server');
      assert.equal((data as Buffer).toString(), 'heartbeat 1');
      const pongEmpty = once(ws, 'pong');
      ws.ping();
      const [empty] = await within(pongEmpty, 5000, 'pong to an empty ping');
      assert.equal((empty as Buffer).length, 0);

      assert.equal(mine.pongs, 0);
      conn.ping();
      conn.ping();
      const deadline = performance.now() + 5000;
      while (mine.pongs < 2 && performance.now() < deadline) await sleep(5);
      assert.equal(mine.pongs, 2);
      assert.equal(conn.isOpen, true);
    } finally {
      await close();
    }
  });

  test('a close from the ws server with code 4002 and a reason arrives at onclose with both', async () => {
    const { conn, ws, close } = await connectToWsServer();
    try {
      const mine = watch(conn);
      const theirs = watchWs(ws);
      ws.send(Buffer.from('last words'));
      ws.close(4002, 'export removed: disk0');
      const got = await within(mine.closed, 5000, 'onclose');
      assert.deepEqual(got, { code: 4002, reason: 'export removed: disk0' });
      // The message before the close came first; the close handshake finished on both sides.
      assert.equal(mine.inbox.items.length, 1);
      assert.equal(mine.inbox.items[0]!.data.toString(), 'last words');
      const their = await within(theirs.closed, 5000, 'ws close event');
      assert.equal(their.code, 4002, 'our client echoed the code');
      assert.equal(conn.isOpen, false);
      await sleep(20);
      assert.equal(mine.closes.length, 1, 'onclose once');
      conn.send([Buffer.from('after close')]); // a no-op, not a throw
    } finally {
      await close();
    }
  });

  test('a ws server close without a code reports 1005', async () => {
    const { conn, ws, close } = await connectToWsServer();
    try {
      const mine = watch(conn);
      ws.close();
      const got = await within(mine.closed, 5000, 'onclose');
      assert.equal(got.code, WS_CLOSE.noStatus);
    } finally {
      await close();
    }
  });

  test('a message over maxMessage from the ws server closes with 1009 on both sides', async () => {
    const { conn, ws, close } = await connectToWsServer({ maxMessage: 64 * KiB });
    try {
      const mine = watch(conn);
      const theirs = watchWs(ws);
      ws.send(bytes(64 * KiB, 1));
      ws.send(bytes(64 * KiB + 1, 2));
      const got = await within(mine.closed, 5000, 'onclose');
      assert.equal(got.code, WS_CLOSE.tooBig);
      assert.equal((await within(theirs.closed, 5000, 'ws close')).code, WS_CLOSE.tooBig);
      assert.equal(mine.inbox.items.length, 1, 'the message of exactly maxMessage bytes arrived, the larger one did not');
      assert.equal(mine.inbox.items[0]!.data.length, 64 * KiB);
    } finally {
      await close();
    }
  });
});

// --- (b) ws client, our server -----------------------------------------------------------------

// Both ways our server can read: http's 'data' events (as over TLS), and a socket re-opened
// with onread on a duplicate of the descriptor (acceptUpgrade with dupFd: the storage server).
for (const reads of ['data', 'onread'] as const) {
  describe(`a ws client against an http server using upgradeProblem/acceptUpgrade (reads: ${reads})`, () => {
    /** Starts our server and connects a ws client; resolves both ends. */
    async function pair(opts: { maxMessage?: number } = {}) {
      let resolveConn!: (c: WsConn) => void;
      const accepted = new Promise<WsConn>((r) => { resolveConn = r; });
      const srv = await ourServer((conn) => resolveConn(conn), { ...opts, reads });
      const ws = new WebSocket(srv.url, PROTOCOL);
      ws.on('error', () => {});
      await within(once(ws, 'open'), 5000, 'ws open');
      const conn = await within(accepted, 5000, 'accepted');
      return { srv, ws, conn };
    }

    test('messages of 0 B, 3 B, 70 KiB and 4 MiB both ways (masked with random keys), byte-exact', async () => {
      const { srv, ws, conn } = await pair();
      try {
        assert.equal(ws.protocol, PROTOCOL);
        assert.equal(conn.reads, reads, 'the way the server reads its socket (the path under test)');
        const mine = watch(conn);
        const theirs = watchWs(ws);
        const up = SIZES.map((n, i) => bytes(n, 400 + i));
        for (const b of up) ws.send(b);
        // Fragmented by the ws client: one message in three frames.
        ws.send(bytes(100, 410), { fin: false });
        ws.send(bytes(70 * KiB, 411), { fin: false });
        ws.send(bytes(7, 412), { fin: true });
        await mine.inbox.count(up.length + 1);
        up.forEach((b, i) => sameBytes(mine.inbox.items[i]!.data, b, `to the server, message ${i} (${b.length} B)`));
        sameBytes(mine.inbox.items[up.length]!.data, Buffer.concat([bytes(100, 410), bytes(70 * KiB, 411), bytes(7, 412)]), 'fragmented message');
        assert.ok(mine.inbox.items.every((m) => m.binary));

        const down = SIZES.map((n, i) => bytes(n, 500 + i));
        for (const b of down) conn.send([b]);
        conn.send([Buffer.from('a'), bytes(200 * KiB, 510)]);
        await theirs.inbox.count(down.length + 1);
        down.forEach((b, i) => sameBytes(theirs.inbox.items[i]!.data, b, `to the ws client, message ${i} (${b.length} B)`));
        sameBytes(theirs.inbox.items[down.length]!.data, Buffer.concat([Buffer.from('a'), bytes(200 * KiB, 510)]), 'parts');
        up.forEach((b, i) => sameBytes(mine.inbox.items[i]!.data, b, `kept message ${i}`));
      } finally {
        ws.terminate();
        await srv.close();
      }
    });

    test('pings both ways get their pongs', async () => {
      const { srv, ws, conn } = await pair();
      try {
        const mine = watch(conn);
        const pong = once(ws, 'pong');
        ws.ping(Buffer.from('from ws'));
        const [data] = await within(pong, 5000, 'pong at the ws client');
        assert.equal((data as Buffer).toString(), 'from ws');
        conn.ping();
        const deadline = performance.now() + 5000;
        while (mine.pongs < 1 && performance.now() < deadline) await sleep(5);
        assert.equal(mine.pongs, 1);
      } finally {
        ws.terminate();
        await srv.close();
      }
    });

    test('a close from the ws client arrives with its code and reason; the client sees the code echoed', async () => {
      const { srv, ws, conn } = await pair();
      try {
        const mine = watch(conn);
        const theirs = watchWs(ws);
        ws.send(Buffer.from('before close'));
        ws.close(4003, 'client is done');
        assert.deepEqual(await within(mine.closed, 5000, 'server onclose'), { code: 4003, reason: 'client is done' });
        assert.equal((await within(theirs.closed, 5000, 'ws close')).code, 4003);
        assert.equal(mine.inbox.items.length, 1);
        assert.equal(mine.inbox.items[0]!.data.toString(), 'before close');
        assert.equal(mine.closes.length, 1);
      } finally {
        ws.terminate();
        await srv.close();
      }
    });

    test('a close from our server arrives at the ws client with code and reason', async () => {
      const { srv, ws, conn } = await pair();
      try {
        const mine = watch(conn);
        const theirs = watchWs(ws);
        conn.close(4004, 'server going away');
        assert.deepEqual(await within(theirs.closed, 5000, 'ws close'), { code: 4004, reason: 'server going away' });
        assert.equal((await within(mine.closed, 5000, 'server onclose')).code, 4004);
      } finally {
        ws.terminate();
        await srv.close();
      }
    });

    test('a message over maxMessage from the ws client closes with 1009', async () => {
      const { srv, ws, conn } = await pair({ maxMessage: 1 * MiB });
      try {
        const mine = watch(conn);
        const theirs = watchWs(ws);
        ws.send(bytes(1 * MiB, 1));
        ws.send(bytes(1 * MiB + 1, 2));
        assert.equal((await within(theirs.closed, 5000, 'ws close')).code, WS_CLOSE.tooBig);
        assert.equal((await within(mine.closed, 5000, 'server onclose')).code, WS_CLOSE.tooBig);
        assert.equal(mine.inbox.items.length, 1);
        assert.equal(mine.inbox.items[0]!.data.length, 1 * MiB);
      } finally {
        ws.terminate();
        await srv.close();
      }
    });

    test('an unmasked frame from a client is answered with a 1002 close', async () => {
      let resolveConn!: (c: WsConn) => void;
      const accepted = new Promise<WsConn>((r) => { resolveConn = r; });
      const srv = await ourServer((conn) => resolveConn(conn), { reads });
      const s = netConnect({ host: '127.0.0.1', port: srv.port });
      s.on('error', () => {});
      try {
        const key = 'dGhlIHNhbXBsZSBub25jZQ==';
        s.write(`GET /disk0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${PROTOCOL}\r\n\r\n`);
        const conn = await within(accepted, 5000, 'accepted');
        const mine = watch(conn);
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        const ended = once(s, 'close');
        await within((async () => { while (!Buffer.concat(chunks).includes('\r\n\r\n')) await sleep(5); })(), 5000, '101');
        s.write(clientFrame(2, Buffer.from('fine'), { key: 0x01020304 }));
        await mine.inbox.count(1);
        s.write(clientFrame(2, Buffer.from('not masked'), { masked: false }));
        assert.equal((await within(mine.closed, 5000, 'server onclose')).code, WS_CLOSE.protocol);
        await within(ended, 5000, 'socket closed by the server');
        const all = Buffer.concat(chunks);
        const head = all.indexOf('\r\n\r\n') + 4;
        assert.match(all.toString('latin1', 0, head), /^HTTP\/1\.1 101 /);
        assert.match(all.toString('latin1', 0, head), new RegExp(`Sec-WebSocket-Accept: ${acceptKey(key).replace(/[+/]/g, '\\$&')}\r\n`));
        assert.equal(closeCodeIn(all.subarray(head)), WS_CLOSE.protocol);
        assert.equal(mine.inbox.items.length, 1, 'nothing after the violation');
      } finally {
        s.destroy();
        await srv.close();
      }
    });

    test('bad upgrades get 400 from the handler that uses upgradeProblem', async () => {
      let accepted = 0;
      const srv = await ourServer((conn) => { accepted++; conn.start(); conn.terminate(); }, { reads });
      try {
        const base = (lines: string[], method = 'GET') => `${method} /disk0 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n${lines.join('\r\n')}\r\n\r\n`;
        const key = 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==';
        const cases: Array<[string, string, RegExp]> = [
          ['no Sec-WebSocket-Key', base(['Upgrade: websocket', 'Sec-WebSocket-Version: 13']), /Sec-WebSocket-Key/],
          ['Sec-WebSocket-Version: 12', base(['Upgrade: websocket', 'Sec-WebSocket-Version: 12', key]), /Version/],
          ['no Sec-WebSocket-Version', base(['Upgrade: websocket', key]), /Version/],
          ['a key of 15 bytes', base(['Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA']), /Sec-WebSocket-Key/],
          ['a key that is not base64', base(['Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: not*base64*at*all*!!!!=']), /Sec-WebSocket-Key/],
          ['Upgrade: h2c', base(['Upgrade: h2c', 'Sec-WebSocket-Version: 13', key]), /Upgrade/],
          ['POST', base(['Upgrade: websocket', 'Sec-WebSocket-Version: 13', key, 'Content-Length: 0'], 'POST'), /method POST/],
        ];
        for (const [what, request, why] of cases) {
          const answer = await rawExchange(srv.port, request);
          assert.match(answer, /^HTTP\/1\.1 400 /, `${what}: ${JSON.stringify(answer.slice(0, 80))}`);
          assert.match(answer.slice(answer.indexOf('\r\n\r\n') + 4), why, `${what}: the body says why`);
        }
        assert.equal(srv.problems.length, cases.length);
        assert.equal(accepted, 0);
        // The same request with everything right is upgraded (the cases above fail for their reason).
        const good = await new Promise<string>((resolve, reject) => {
          const s = netConnect({ host: '127.0.0.1', port: srv.port });
          s.on('error', reject);
          s.write(base(['Upgrade: websocket', 'Sec-WebSocket-Version: 13', key]));
          s.once('data', (c: Buffer) => { s.destroy(); resolve(c.toString('latin1')); });
        }).catch((e: Error) => e.message);
        assert.match(good, /^HTTP\/1\.1 101 /);
        assert.equal(accepted, 1);
      } finally {
        await srv.close();
      }
    });

    test('a ws client asking with a bad version is refused with 400', async () => {
      let accepted = 0;
      const srv = await ourServer((conn) => { accepted++; conn.start(); conn.terminate(); }, { reads });
      try {
        const ws = new WebSocket(srv.url, PROTOCOL, { protocolVersion: 8 });
        const status = await within(new Promise<number>((resolve) => {
          ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); res.resume(); });
          ws.on('error', () => {});
        }), 5000, 'unexpected-response');
        ws.terminate();
        assert.equal(status, 400);
        assert.match(srv.problems[0] ?? '', /Version/);
        assert.equal(accepted, 0);
      } finally {
        await srv.close();
      }
    });
  });
}

// --- (c) wsConnect refusals --------------------------------------------------------------------

describe('wsConnect refusals', () => {
  test('401 with a body (http server) -> WsHandshakeError with status 401 and that body', async () => {
    const http = createHttpServer();
    const sockets = trackSockets(http);
    http.on('upgrade', (_req: IncomingMessage, socket: Duplex) => refuse(socket, 401, 'Unauthorized', 'bad token for disk0'));
    const port = await listen(http);
    try {
      const e = await refused(connectOpts(new URL(`ws://127.0.0.1:${port}/disk0`)));
      assert.equal(e.status, 401);
      assert.equal(e.body, 'bad token for disk0');
      assert.match(e.message, /401/);
    } finally {
      await shut(http, sockets);
    }
  });

  test('refusal bodies: without Content-Length (ends at close), and arriving in pieces', async () => {
    const srv = await rawHttpServer((socket, head) => {
      if (head.startsWith('GET /a ')) {
        socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\nread-only token');
      } else {
        socket.write('HTTP/1.1 404 Not Found\r\nContent-Length: 22\r\n\r\nno export ');
        setTimeout(() => socket.write("'disk9' here"), 50);
      }
    });
    try {
      const a = await refused(connectOpts(new URL(`ws://127.0.0.1:${srv.port}/a`)));
      assert.equal(a.status, 403);
      assert.equal(a.body, 'read-only token');
      const b = await refused(connectOpts(new URL(`ws://127.0.0.1:${srv.port}/b`)));
      assert.equal(b.status, 404);
      assert.equal(b.body, "no export 'disk9' here");
      await within(Promise.all(srv.socketClosed), 5000, 'server sockets closed');
    } finally {
      await srv.close();
    }
  });

  test('a refusal without Content-Length on a connection kept open is reported at once, not at the timeout', async () => {
    const srv = await rawHttpServer((socket) => {
      socket.write('HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n9\r\nno export\r\n0\r\n\r\n');
    });
    try {
      const t0 = performance.now();
      const e = await refused(connectOpts(srv.url, { timeoutMs: 5000 }));
      assert.equal(e.status, 404);
      assert.ok(performance.now() - t0 < 2000, `took ${Math.round(performance.now() - t0)} ms`);
    } finally {
      await srv.close();
    }
  });

  test('a 101 with a wrong Sec-WebSocket-Accept is rejected and the socket closed', async () => {
    const srv = await rawHttpServer((socket, _head, key) => {
      socket.write(switching(key + 'x', ['Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Accept: $ACCEPT', `Sec-WebSocket-Protocol: ${PROTOCOL}`]));
    });
    try {
      const e = await refused(connectOpts(srv.url));
      assert.match(e.message, /Sec-WebSocket-Accept/);
      await within(Promise.all(srv.socketClosed), 5000, 'socket closed');
      // What the client asked for.
      const req = srv.requests[0]!;
      assert.match(req, /^GET \/disk0 HTTP\/1\.1\r\n/);
      assert.match(req, /\r\nUpgrade: websocket/i);
      assert.match(req, /\r\nSec-WebSocket-Version: 13/i);
      assert.match(req, new RegExp(`\r\nSec-WebSocket-Protocol: ${PROTOCOL}`, 'i'));
      assert.match(req, /\r\nSec-WebSocket-Key: [+/0-9A-Za-z]{22}==/i);
    } finally {
      await srv.close();
    }
  });

  test('a 101 without the subprotocol, or with another one, is rejected', async () => {
    const srv = await rawHttpServer((socket, head, key) => {
      const proto = head.startsWith('GET /other ') ? ['Sec-WebSocket-Protocol: wsblk.v2'] : [];
      socket.write(switching(key, ['Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Accept: $ACCEPT', ...proto]));
    });
    try {
      const a = await refused(connectOpts(srv.url));
      assert.match(a.message, /subprotocol/);
      const b = await refused(connectOpts(new URL(`ws://127.0.0.1:${srv.port}/other`)));
      assert.match(b.message, /subprotocol/);
      assert.match(b.message, /wsblk\.v2/);
      await within(Promise.all(srv.socketClosed), 5000, 'sockets closed');
    } finally {
      await srv.close();
    }
  });

  test('a 101 without Upgrade: websocket, and an answer that is not HTTP, are rejected', async () => {
    const srv = await rawHttpServer((socket, head, key) => {
      if (head.startsWith('GET /junk ')) socket.write('SSH-2.0-OpenSSH_9.6\r\n\r\n');
      else socket.write(switching(key, ['Connection: Upgrade', 'Sec-WebSocket-Accept: $ACCEPT', `Sec-WebSocket-Protocol: ${PROTOCOL}`]));
    });
    try {
      const a = await refused(connectOpts(srv.url));
      assert.match(a.message, /Upgrade/);
      const b = await refused(connectOpts(new URL(`ws://127.0.0.1:${srv.port}/junk`)));
      assert.match(b.message, /not an HTTP response/);
    } finally {
      await srv.close();
    }
  });

  test('a response head that never ends is rejected once it is too large', async () => {
    const srv = await rawHttpServer((socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\n');
      for (let i = 0; i < 400; i++) socket.write(`X-Filler-${i}: ${'f'.repeat(60)}\r\n`);
    });
    try {
      const e = await refused(connectOpts(srv.url));
      assert.match(e.message, /larger than/);
    } finally {
      await srv.close();
    }
  });

  test('a server that closes during the handshake -> ECONNRESET', async () => {
    const srv = await rawHttpServer((socket) => socket.end());
    try {
      const e = await refused(connectOpts(srv.url));
      assert.equal(e.code, 'ECONNRESET');
      assert.equal(e.status, undefined);
    } finally {
      await srv.close();
    }
  });

  test('connection refused (a closed port) -> code ECONNREFUSED', async () => {
    const port = await closedPort();
    const e = await refused(connectOpts(new URL(`ws://127.0.0.1:${port}/disk0`)));
    assert.equal(e.code, 'ECONNREFUSED');
    assert.equal(e.status, undefined);
  });

  test('a server that accepts TCP but never answers -> rejected after timeoutMs with ETIMEDOUT', async () => {
    const srv = await rawHttpServer(() => {});
    try {
      const t0 = performance.now();
      const e = await refused(connectOpts(srv.url, { timeoutMs: 300 }));
      const took = performance.now() - t0;
      assert.equal(e.code, 'ETIMEDOUT');
      assert.ok(took >= 280 && took < 3000, `rejected after ${took.toFixed(0)} ms`);
      await within(Promise.all(srv.socketClosed), 5000, 'the client closed its socket');
      assert.equal(srv.requests.length, 1, 'the request was sent');
    } finally {
      await srv.close();
    }
  });
});

// --- (d), (e) our client and our server --------------------------------------------------------

describe('our client and our server together', () => {
  /** Our server (with `onConn`), and our client connected to it. */
  async function ours(onConn: (conn: WsConn) => void, opts: { maxMessage?: number; closeTimeoutMs?: number } = {}) {
    let resolveConn!: (c: WsConn) => void;
    const accepted = new Promise<WsConn>((r) => { resolveConn = r; });
    const srv = await ourServer((conn) => { onConn(conn); resolveConn(conn); }, opts);
    const client = await wsConnect(connectOpts(srv.url, { maxMessage: opts.maxMessage ?? 8 * MiB, closeTimeoutMs: opts.closeTimeoutMs ?? 1000 }));
    const server = await within(accepted, 5000, 'accepted');
    return { srv, client, server };
  }

  test('1000 messages of random sizes (1 B .. 300 KiB, seeded) echo back byte-exact and in order', async () => {
    const { srv, client } = await ours((conn) => { conn.onmessage = (data) => conn.send([data]); conn.start(); });
    try {
      const r = rng(2024);
      const source = bytes(1 * MiB, 7);
      const total = 1000;
      const sent: Buffer[] = [];
      const mine = watch(client);
      let received = 0;
      let bytesBack = 0;
      const window = 24;
      const make = (i: number) => {
        const n = r() < 0.3 ? between(r, 1, 2000) : between(r, 1, 300 * KiB);
        const off = between(r, 0, source.length - n);
        const m = Buffer.from(source.subarray(off, off + n));
        for (let k = 0; k < Math.min(4, n); k++) m[k] = (i >>> (8 * k)) & 0xff;
        return m;
      };
      let next = 0;
      const sendNext = () => {
        const m = make(next++);
        sent.push(m);
        // One to three parts per message.
        const cuts = between(r, 0, 2);
        const parts: Buffer[] = [];
        let at = 0;
        for (let k = 0; k < cuts && at < m.length; k++) {
          const to = between(r, at, m.length);
          parts.push(m.subarray(at, to));
          at = to;
        }
        parts.push(m.subarray(at));
        client.send(parts);
      };
      while (next < Math.min(window, total)) sendNext();
      while (received < total) {
        await mine.inbox.count(received + 1, 20_000);
        const got = mine.inbox.items[received]!;
        sameBytes(got.data, sent[received]!, `echo ${received}`);
        assert.equal(got.binary, true);
        bytesBack += got.data.length;
        // Free what is checked; keep the window full.
        mine.inbox.items[received] = undefined as never;
        sent[received] = undefined as never;
        received++;
        if (next < total) sendNext();
      }
      assert.equal(received, total);
      assert.ok(bytesBack > 50 * MiB, `${bytesBack} bytes echoed`);
      await sleep(20);
      assert.equal(mine.inbox.items.length, total, 'no extra messages');
    } finally {
      client.terminate();
      await srv.close();
    }
  });

  test('sendv: a frame larger than the socket buffers goes out partly straight and the rest queued; frames after it wait behind it, byte-exact and in order', async () => {
    const got: Buffer[] = [];
    const { srv, client, server } = await ours((conn) => { conn.onmessage = (data) => got.push(Buffer.from(data)); conn.start(); }, { maxMessage: 64 * MiB });
    try {
      const small = (i: number) => bytes(100 + i, i);
      const big = bytes(32 * MiB, 99);
      client.send([small(1)]);
      assert.equal(client.sentDirect, 1, 'nothing queued: the frame went straight to the descriptor');
      await within((async () => { while (got.length < 1) await sleep(5); })(), 5000, 'first message');
      server.socket.pause();
      client.send([big.subarray(0, 5), big.subarray(5)]);
      assert.equal(client.sentDirect, 1, 'the kernel did not take 32 MiB whole');
      assert.ok(client.socket.writableLength > 0 && client.socket.writableLength < 32 * MiB, `the rest is queued (${client.socket.writableLength} bytes)`);
      client.send([small(2)]);
      client.ping();
      client.send([small(3), small(4)]);
      assert.equal(client.sentDirect, 1, 'behind a queued frame everything queues');
      server.socket.resume();
      await within((async () => { while (got.length < 4) await sleep(5); })(), 10_000, 'all messages');
      sameBytes(got[0]!, small(1), 'first');
      sameBytes(got[1]!, big, 'the large frame');
      sameBytes(got[2]!, small(2), 'after it');
      sameBytes(got[3]!, Buffer.concat([small(3), small(4)]), 'two parts');
      await within((async () => { while (client.socket.writableLength > 0) await sleep(5); })(), 5000, 'drain');
      client.send([small(5)]);
      assert.equal(client.sentDirect, 2, 'straight again once the queue has drained');
      // The guard itself, whatever the kernel has room for: a frame goes behind anything the
      // socket still holds (its queue, or a cork).
      Object.defineProperty(client.socket, 'writableLength', { configurable: true, get: () => 1 });
      client.send([small(6)]);
      delete (client.socket as { writableLength?: number }).writableLength;
      client.socket.cork();
      client.send([small(7)]);
      client.socket.uncork();
      assert.equal(client.sentDirect, 2, 'queued or corked: through the socket');
      await within((async () => { while (got.length < 7) await sleep(5); })(), 5000, 'last messages');
      for (const i of [5, 6, 7]) sameBytes(got[i - 1]!, small(i), `message ${i}`);
    } finally {
      client.terminate();
      await srv.close();
    }
  });

  test('close(code, reason) from the client: the server sees both, the client sees its code echoed', async () => {
    let server!: ReturnType<typeof watch>;
    const { srv, client } = await ours((conn) => { server = watch(conn); });
    try {
      const mine = watch(client);
      client.send([Buffer.from('one last message')]);
      client.close(4001, 'client says bye');
      assert.equal(client.isOpen, false);
      client.send([Buffer.from('dropped')]); // after close(): nothing goes out
      assert.deepEqual(await within(server.closed, 5000, 'server onclose'), { code: 4001, reason: 'client says bye' });
      assert.equal((await within(mine.closed, 5000, 'client onclose')).code, 4001);
      assert.equal(server.inbox.items.length, 1);
      assert.equal(server.inbox.items[0]!.data.toString(), 'one last message');
      await sleep(30);
      assert.equal(server.closes.length, 1);
      assert.equal(mine.closes.length, 1);
    } finally {
      client.terminate();
      await srv.close();
    }
  });

  test('close(code, reason) from the server arrives at the client', async () => {
    let serverConn!: WsConn;
    let server!: ReturnType<typeof watch>;
    const { srv, client } = await ours((conn) => { serverConn = conn; server = watch(conn); });
    try {
      const mine = watch(client);
      serverConn.close(4005, 'server restarting');
      assert.deepEqual(await within(mine.closed, 5000, 'client onclose'), { code: 4005, reason: 'server restarting' });
      assert.equal((await within(server.closed, 5000, 'server onclose')).code, 4005);
    } finally {
      client.terminate();
      await srv.close();
    }
  });

  test('a long close reason is cut to fit a control frame (123 bytes)', async () => {
    let server!: ReturnType<typeof watch>;
    const { srv, client } = await ours((conn) => { server = watch(conn); });
    try {
      watch(client);
      client.close(4000, 'r'.repeat(300));
      const got = await within(server.closed, 5000, 'server onclose');
      assert.equal(got.code, 4000);
      assert.equal(got.reason, 'r'.repeat(123));
    } finally {
      client.terminate();
      await srv.close();
    }
  });

  test('terminate() gives the peer 1006, both ways', async () => {
    for (const side of ['client', 'server'] as const) {
      let serverConn!: WsConn;
      let server!: ReturnType<typeof watch>;
      const { srv, client } = await ours((conn) => { serverConn = conn; server = watch(conn); });
      try {
        const mine = watch(client);
        const cutter = side === 'client' ? client : serverConn;
        const peer = side === 'client' ? server : mine;
        const own = side === 'client' ? mine : server;
        cutter.terminate();
        assert.deepEqual(await within(peer.closed, 5000, `peer of the ${side}`), { code: WS_CLOSE.abnormal, reason: '' });
        assert.equal((await within(own.closed, 5000, `${side} itself`)).code, WS_CLOSE.abnormal);
      } finally {
        client.terminate();
        await srv.close();
      }
    }
  });

  test('close() to a peer that never answers cuts the socket after closeTimeoutMs (1006)', async () => {
    const srv = await rawHttpServer((socket, _head, key) => {
      socket.write(switching(key, ['Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Accept: $ACCEPT', `Sec-WebSocket-Protocol: ${PROTOCOL}`]));
      // Reads everything, answers nothing, never ends.
      socket.resume();
    });
    let client: WsConn | undefined;
    try {
      client = await wsConnect(connectOpts(srv.url, { closeTimeoutMs: 250 }));
      const mine = watch(client);
      const t0 = performance.now();
      client.close(1000, 'bye');
      const got = await within(mine.closed, 5000, 'client onclose');
      const took = performance.now() - t0;
      assert.equal(got.code, WS_CLOSE.abnormal);
      assert.ok(took >= 200 && took < 3000, `closed after ${took.toFixed(0)} ms`);
      await within(Promise.all(srv.socketClosed), 5000, 'server socket closed');
    } finally {
      client?.terminate();
      await srv.close();
    }
  });
});

// --- (f) what comes with the handshake waits for start() ----------------------------------------

describe('messages that come with the handshake wait for start()', () => {
  test('wsConnect: a frame in the same write as the 101 reaches onmessage once start() is called (at once, or 50 ms later)', async () => {
    for (const delay of [0, 50]) {
      const peer = await rawPeer(Buffer.concat([Buffer.from([0x82, 0x05]), Buffer.from('hello')]));
      let conn: WsConn | undefined;
      try {
        conn = await wsConnect(connectOpts(peer.srv.url));
        if (delay) await sleep(delay);
        const mine = watch(conn);
        await mine.inbox.count(1, 5000);
        assert.equal(mine.inbox.items[0]!.data.toString(), 'hello', `delay ${delay}`);
        assert.equal(mine.inbox.items[0]!.binary, true);
        await sleep(20);
        assert.equal(mine.inbox.items.length, 1, 'once');
        assert.equal(conn.isOpen, true);
      } finally {
        conn?.terminate();
        await peer.srv.close();
      }
    }
  });

  test('wsConnect against a ws server that sends in its connection handler: the message arrives on 20 of 20 connections', async () => {
    const srv = await wsServer();
    let n = 0;
    srv.wss.on('connection', (ws) => ws.send(Buffer.from(`welcome ${n++}`)));
    const conns: WsConn[] = [];
    try {
      const got: string[] = [];
      for (let i = 0; i < 20; i++) {
        const conn = await wsConnect(connectOpts(srv.url));
        conns.push(conn);
        const mine = watch(conn);
        await mine.inbox.count(1, 2000).catch(() => {});
        got.push(mine.inbox.items.map((m) => m.data.toString()).join(','));
        conn.terminate();
      }
      const missed = got.filter((g, i) => g !== `welcome ${i}`).length;
      assert.equal(missed, 0, `welcome missed on ${missed} of 20 connections: ${JSON.stringify(got)}`);
    } finally {
      for (const c of conns) c.terminate();
      await srv.close();
    }
  });

  test('acceptUpgrade: a masked frame in the same write as the upgrade request (`head`) reaches onmessage after start() (at once, or 50 ms later; reads by data events and by onread)', async () => {
    for (const [reads, delay] of [['data', 0], ['data', 50], ['onread', 0], ['onread', 50]] as const) {
      let server!: ReturnType<typeof watch>;
      let resolveWatched!: () => void;
      const watched = new Promise<void>((r) => { resolveWatched = r; });
      const srv = await ourServer((conn) => {
        const go = () => { server = watch(conn); resolveWatched(); };
        if (delay) setTimeout(go, delay);
        else go();
      }, { reads });
      let c: Awaited<ReturnType<typeof rawClient>> | undefined;
      try {
        c = await rawClient(srv.port, clientFrame(2, Buffer.from('hello'), { key: 0x01020304 }));
        await within(watched, 5000, 'accepted');
        await server.inbox.count(1, 5000);
        assert.equal(srv.heads[0], 11, 'the frame came in `head` (the path under test)');
        assert.equal(server.inbox.items[0]!.data.toString(), 'hello', `${reads}, delay ${delay}`);
        assert.equal(server.inbox.items[0]!.binary, true);
        await sleep(20);
        assert.equal(server.inbox.items.length, 1, 'once');
      } finally {
        c?.s.destroy();
        await srv.close();
      }
    }
  });

  test('acceptUpgrade with dupFd: frames written in pieces right after the 101 (the first read of the re-opened socket, then the frame reader\'s) arrive whole and in order, and the answer goes out', async () => {
    let server!: ReturnType<typeof watch>;
    let resolveConn!: (c: WsConn) => void;
    const accepted = new Promise<WsConn>((r) => { resolveConn = r; });
    const srv = await ourServer((conn) => { server = watch(conn); resolveConn(conn); }, { reads: 'onread' });
    let c: Awaited<ReturnType<typeof rawClient>> | undefined;
    try {
      c = await rawClient(srv.port);
      const conn = await within(accepted, 5000, 'accepted');
      assert.equal(conn.reads, 'onread');
      const big = bytes(70 * KiB, 77);
      const smalls = Array.from({ length: 100 }, (_, i) => Buffer.from(`small ${i}`));
      const wire = Buffer.concat([clientFrame(2, big, { key: 0x0badf00d }), ...smalls.map((b, i) => clientFrame(2, b, { key: i * 0x01010101 }))]);
      // Pieces of 7 B (the first read gets less than a frame header), 20 KiB (past the first
      // read's 16 KiB buffer), then the rest in 3 writes, 15 ms apart so they are separate reads.
      const cuts = [7, 20 * KiB, 50 * KiB, 72 * KiB, wire.length];
      let at = 0;
      for (const cut of cuts) {
        c.s.write(wire.subarray(at, cut));
        at = cut;
        await sleep(15);
      }
      await server.inbox.count(101, 5000);
      sameBytes(server.inbox.items[0]!.data, big, 'the 70 KiB frame');
      smalls.forEach((b, i) => assert.equal(server.inbox.items[i + 1]!.data.toString(), b.toString(), `small frame ${i}`));
      conn.send([Buffer.from('answer')]);
      await within((async () => { while (!c!.after().includes('answer')) await sleep(5); })(), 5000, 'the answer at the client');
    } finally {
      c?.s.destroy();
      await srv.close();
    }
  });

  test('our client: a message already parsed (the ping after it was answered) reaches onmessage only at start()', async () => {
    const { conn, ws, close } = await connectToWsServer();
    try {
      const mine = watch(conn, { start: false });
      ws.send(Buffer.from('queued'));
      const pong = once(ws, 'pong');
      ws.ping(Buffer.from('after the message'));
      // Frames are parsed in order: once the ping is answered, 'queued' has been parsed.
      await within(pong, 5000, 'pong');
      await sleep(20);
      assert.equal(mine.inbox.items.length, 0, 'nothing before start()');
      conn.start();
      assert.equal(mine.inbox.items.length, 1, 'start() delivers it at once');
      assert.equal(mine.inbox.items[0]!.data.toString(), 'queued');
      conn.start();
      assert.equal(mine.inbox.items.length, 1, 'a second start() delivers nothing again');
      ws.send(Buffer.from('live'));
      await mine.inbox.count(2);
      assert.equal(mine.inbox.items[1]!.data.toString(), 'live');
    } finally {
      await close();
    }
  });

  test('our server: a message already parsed (the ping after it was answered) reaches onmessage only at start()', async () => {
    const srv = await ourServerQueue();
    const ws = new WebSocket(srv.url, PROTOCOL);
    ws.on('error', () => {});
    try {
      await within(once(ws, 'open'), 5000, 'ws open');
      const conn = await srv.next();
      const mine = watch(conn, { start: false });
      ws.send(Buffer.from('queued'));
      const pong = once(ws, 'pong');
      ws.ping(Buffer.from('after the message'));
      await within(pong, 5000, 'pong');
      await sleep(20);
      assert.equal(mine.inbox.items.length, 0, 'nothing before start()');
      conn.start();
      assert.equal(mine.inbox.items.length, 1, 'start() delivers it at once');
      assert.equal(mine.inbox.items[0]!.data.toString(), 'queued');
      ws.send(Buffer.from('live'));
      await mine.inbox.count(2);
      assert.equal(mine.inbox.items[1]!.data.toString(), 'live');
    } finally {
      ws.terminate();
      await srv.close();
    }
  });

  test('a close that comes before start() reaches onclose only at start(), with its code and reason', async () => {
    const srv = await wsServer();
    srv.wss.on('connection', (ws) => ws.close(4002, 'not today'));
    let conn: WsConn | undefined;
    try {
      conn = await wsConnect(connectOpts(srv.url));
      const socketClosed = new Promise<void>((r) => conn!.socket.once('close', () => r()));
      const mine = watch(conn, { start: false });
      await within(socketClosed, 5000, 'socket closed');
      await sleep(10);
      assert.equal(mine.closes.length, 0, 'no onclose before start()');
      conn.start();
      assert.deepEqual(mine.closes, [{ code: 4002, reason: 'not today' }]);
    } finally {
      conn?.terminate();
      await srv.close();
    }
  });

  test('a ws server that sends, then closes, in its connection handler: start() after the socket closed delivers the message, then onclose', async () => {
    const srv = await wsServer();
    srv.wss.on('connection', (ws) => {
      ws.send(Buffer.from('export removed'));
      ws.close(4002, 'bye');
    });
    let conn: WsConn | undefined;
    try {
      conn = await wsConnect(connectOpts(srv.url));
      const socketClosed = new Promise<void>((r) => conn!.socket.once('close', () => r()));
      const order: string[] = [];
      const mine = watch(conn, { start: false });
      const { onmessage, onclose } = conn;
      conn.onmessage = (data, binary) => { order.push('message'); onmessage(data, binary); };
      conn.onclose = (code, reason) => { order.push('close'); onclose(code, reason); };
      // Both the message and the close have come before start().
      await within(socketClosed, 5000, 'socket closed');
      await sleep(10);
      assert.equal(mine.inbox.items.length, 0, 'no message before start()');
      assert.equal(mine.closes.length, 0, 'no onclose before start()');
      conn.start();
      assert.deepEqual(mine.inbox.items.map((m) => [m.data.toString(), m.binary]), [['export removed', true]]);
      assert.deepEqual(mine.closes, [{ code: 4002, reason: 'bye' }]);
      assert.deepEqual(order, ['message', 'close'], 'the message first, then onclose');
    } finally {
      conn?.terminate();
      await srv.close();
    }
  });
});

// --- (g) send([]) and close frames a peer may not send ------------------------------------------

describe('send([]) and the close frames a peer sends', () => {
  test('send([]) delivers an empty binary message: our client to a ws server, our server to a ws client', async () => {
    // Our client -> ws server.
    {
      const { conn, ws, close } = await connectToWsServer();
      try {
        const theirs = watchWs(ws);
        watch(conn);
        conn.send([]);
        conn.send([Buffer.from('after')]);
        await theirs.inbox.count(2);
        assert.equal(theirs.inbox.items[0]!.data.length, 0);
        assert.equal(theirs.inbox.items[0]!.binary, true);
        assert.equal(theirs.inbox.items[1]!.data.toString(), 'after');
      } finally {
        await close();
      }
    }
    // Our server -> ws client.
    {
      const srv = await ourServerQueue();
      const ws = new WebSocket(srv.url, PROTOCOL);
      ws.on('error', () => {});
      try {
        const theirs = watchWs(ws);
        await within(once(ws, 'open'), 5000, 'ws open');
        const conn = await srv.next();
        watch(conn);
        conn.send([]);
        conn.send([Buffer.from('after')]);
        await theirs.inbox.count(2);
        assert.equal(theirs.inbox.items[0]!.data.length, 0);
        assert.equal(theirs.inbox.items[0]!.binary, true);
        assert.equal(theirs.inbox.items[1]!.data.toString(), 'after');
      } finally {
        ws.terminate();
        await srv.close();
      }
    }
    // On the wire: 82 00.
    {
      const srv = await ourServerQueue();
      let c: Awaited<ReturnType<typeof rawClient>> | undefined;
      try {
        c = await rawClient(srv.port);
        const conn = await srv.next();
        watch(conn);
        conn.send([]);
        await within((async () => { while (c!.after().length < 2) await sleep(5); })(), 5000, 'the frame');
        await sleep(20);
        assert.deepEqual([...c.after()], [0x82, 0x00]);
      } finally {
        c?.s.destroy();
        await srv.close();
      }
    }
  });

  for (const code of [1005, 999, 1006, 2000, 5000]) {
    test(`a close frame with code ${code} (may not be sent) closes with 1002, at our server and at our client`, async () => {
      const { server, client } = await rawCloseBothWays(closePayload(code, 'x'));
      assert.equal(server.code, WS_CLOSE.protocol, `server onclose (${server.reason})`);
      assert.equal(server.sent, WS_CLOSE.protocol, 'the server\'s close frame');
      assert.equal(client.code, WS_CLOSE.protocol, `client onclose (${client.reason})`);
      assert.equal(client.sent, WS_CLOSE.protocol, 'the client\'s close frame');
    });
  }

  test('a close reason that is not UTF-8 (ff fe) closes with 1002, at our server and at our client', async () => {
    const { server, client } = await rawCloseBothWays(closePayload(4000, Buffer.from([0xff, 0xfe])));
    assert.equal(server.code, WS_CLOSE.protocol, `server onclose (${server.reason})`);
    assert.equal(server.sent, WS_CLOSE.protocol);
    assert.equal(client.code, WS_CLOSE.protocol, `client onclose (${client.reason})`);
    assert.equal(client.sent, WS_CLOSE.protocol);
  });

  test('a close with code 3000 and a UTF-8 reason arrives at onclose as is, and the code is echoed', async () => {
    const reason = 'wartung — bis 18:00 ✓ 🛠';
    const { server, client } = await rawCloseBothWays(closePayload(3000, reason));
    assert.deepEqual({ code: server.code, reason: server.reason }, { code: 3000, reason });
    assert.equal(server.sent, 3000);
    assert.deepEqual({ code: client.code, reason: client.reason }, { code: 3000, reason });
    assert.equal(client.sent, 3000);
  });
});
