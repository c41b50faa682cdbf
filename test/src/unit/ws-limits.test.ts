// The bounds of the WebSocket frame layer against a hostile peer, over real loopback sockets:
// a WsConn of either role (the server's reads 'data' chunks, the client's reads with onread)
// faces a raw socket that plays the peer byte by byte. A flood of empty continuation frames is
// refused; a header claiming a huge frame allocates with the bytes that arrive, not with the
// claim; a frame stalled half-way is closed (4005); a peer that sends but never reads stops
// being read ('backlog') and gets at most one queued pong.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, MAX_FRAGMENTS, WS_CLOSE } from '@wsblk/shared';
import { bytes } from '../support/random.js';
import { header64, readFrames } from '../support/ws-wire.js';
import { RecordingPool, pair, sleep, until } from '../support/ws-pair.js';

const KiB = 1024;
const MiB = 1 << 20;
const OP = { cont: 0, binary: 2, close: 8, ping: 9, pong: 10 } as const;
/** The reader's first buffer for a large frame (BIG_FIRST in frame-reader.ts). */
const BIG_FIRST = MiB + 64 * KiB;

/** The close code of the first close frame among `frames`, or undefined. */
const closeCode = (frames: ReturnType<typeof readFrames>['frames']) => {
  const f = frames.find((x) => x.opcode === OP.close);
  return f ? f.payload.readUInt16BE(0) : undefined;
};

for (const role of ['server', 'client'] as const) {
  describe(`ws limits, ${role} role (${role === 'server' ? "'data' chunks" : 'onread'})`, () => {
    test(`a flood of empty continuation frames is refused after ${MAX_FRAGMENTS} fragments (1009), the message never delivered`, async () => {
      const p = await pair(role);
      try {
        const flood = [p.peer.frame(OP.binary, Buffer.from('x'), false)];
        for (let i = 0; i < MAX_FRAGMENTS + 2000; i++) flood.push(p.peer.frame(OP.cont, Buffer.alloc(0), false));
        p.peer.send(Buffer.concat(flood));
        await until(() => p.closed() !== undefined, 5000, 'the conn closing');
        assert.equal(p.closed()!.code, WS_CLOSE.tooBig);
        assert.match(p.closed()!.reason, /fragments/);
        assert.equal(closeCode(p.peer.frames()), WS_CLOSE.tooBig, 'the peer was told why');
        assert.equal(p.messages.length, 0);
      } finally {
        p.done();
      }
    });

    test(`a message in exactly ${MAX_FRAGMENTS} fragments (empty ones among them) is delivered whole`, async () => {
      const p = await pair(role);
      try {
        const parts = Array.from({ length: MAX_FRAGMENTS }, (_, i) => (i % 3 === 0 ? Buffer.alloc(0) : bytes(i % 50, i)));
        p.peer.send(Buffer.concat(parts.map((b, i) => p.peer.frame(i === 0 ? OP.binary : OP.cont, b, i === parts.length - 1))));
        await until(() => p.messages.length === 1, 5000, 'the message');
        assert.ok(p.messages[0]!.equals(Buffer.concat(parts)));
        assert.equal(p.closed(), undefined);
      } finally {
        p.done();
      }
    });

    test('a header claiming 64 MiB followed by 1000 bytes allocates no more than the first buffer (1 MiB + 64 KiB), then grows with what arrives', async () => {
      const pool = new RecordingPool(0, 0);
      const p = await pair(role, { pool, maxMessage: 100 * MiB });
      try {
        const claimed = 64 * MiB;
        // The header alone (its payload is never finished, so its bytes need no masking).
        const head = header64(OP.binary, BigInt(claimed), role === 'server');
        const payload = bytes(3 * MiB, 7);
        p.peer.send(head);
        let sent = 0;
        for (const upTo of [1000, MiB, 2 * MiB, 3 * MiB]) {
          p.peer.send(payload.subarray(sent, upTo));
          sent = upTo;
          await until(() => p.conn.reader.bytesIn >= head.length + upTo, 5000, `${upTo} bytes in`);
          const bound = Math.max(BIG_FIRST, 4 * upTo);
          assert.ok(pool.largest <= bound, `after ${upTo} bytes of a 64 MiB frame, the largest buffer taken is ${pool.largest} (bound ${bound})`);
        }
        assert.ok(pool.largest < claimed / 8, `largest ${pool.largest}`);
        assert.equal(p.messages.length, 0);
      } finally {
        p.done();
      }
    });

    test('a 6 MiB frame sent in pieces grows its buffer 1.06 -> 4.25 -> 6 MiB and arrives byte-exact', async () => {
      const pool = new RecordingPool(0, 0);
      const p = await pair(role, { pool });
      try {
        const payload = bytes(6 * MiB, 8);
        const wire = p.peer.frame(OP.binary, payload);
        for (let at = 0; at < wire.length; at += 700 * KiB) {
          p.peer.send(wire.subarray(at, at + 700 * KiB));
          await sleep(2);
        }
        await until(() => p.messages.length === 1, 5000, 'the message');
        assert.ok(p.messages[0]!.equals(payload), 'byte-exact');
        assert.deepEqual(pool.taken, [BIG_FIRST, 4 * BIG_FIRST, 6 * MiB]);
      } finally {
        p.done();
      }
    });

    test('a frame stalled half-way is closed with 4005 \'frame stalled\' after frameTimeoutMs', async () => {
      const p = await pair(role, { frameTimeoutMs: 150 });
      try {
        const wire = p.peer.frame(OP.binary, bytes(100, 1));
        p.peer.send(wire.subarray(0, 20));
        await until(() => p.closed() !== undefined, 3000, 'the conn closing');
        assert.deepEqual(p.closed(), { code: CloseCode.Timeout, reason: 'frame stalled' });
        assert.equal(closeCode(p.peer.frames()), CloseCode.Timeout);
      } finally {
        p.done();
      }
    });

    test('not a stall: an idle connection, a frame trickling in a byte at a time, a partial frame while the owner paused reading', async () => {
      // A byte every 30 ms is a peer that moves (a tick sees bytes), however long the frame takes.
      const p = await pair(role, { frameTimeoutMs: 300 });
      try {
        p.peer.send(p.peer.frame(OP.binary, Buffer.from('whole')));
        await sleep(700); // idle, nothing partial: two ticks
        const wire = p.peer.frame(OP.binary, bytes(12, 2));
        for (let i = 0; i < wire.length; i++) {
          p.peer.send(wire.subarray(i, i + 1));
          await sleep(30);
        }
        await until(() => p.messages.length === 2, 2000, 'two messages');
        const partial = p.peer.frame(OP.binary, bytes(50, 3));
        p.conn.pauseReading('owner');
        p.peer.send(partial.subarray(0, 10));
        await sleep(700); // two ticks and more
        assert.equal(p.closed(), undefined, 'still open');
        p.conn.resumeReading('owner');
        p.peer.send(partial.subarray(10));
        await until(() => p.messages.length === 3, 2000, 'the third message');
        assert.equal(p.closed(), undefined);
        assert.ok(p.messages[2]!.equals(bytes(50, 3)));
      } finally {
        p.done();
      }
    });

    test('a peer that sends requests but never reads: reading stops at maxBuffered and resumes once it reads', async () => {
      const maxBuffered = MiB;
      const reply = 256 * KiB;
      const requests = 200;
      const p = await pair(role, { maxBuffered });
      try {
        let maxQueued = 0;
        p.conn.onmessage = (data) => {
          p.messages.push(data);
          p.conn.send([Buffer.alloc(reply, data[0])]);
          maxQueued = Math.max(maxQueued, p.conn.bufferedBytes);
        };
        p.peer.socket.pause();
        const reqs: Buffer[] = [];
        for (let i = 0; i < requests; i++) reqs.push(p.peer.frame(OP.binary, Buffer.alloc(16 * KiB, i)));
        p.peer.send(Buffer.concat(reqs));
        // Let the conn read all it will.
        await until(() => p.messages.length > 0, 5000, 'the first request');
        let seen = -1;
        while (seen !== p.messages.length) {
          seen = p.messages.length;
          await sleep(200);
        }
        assert.ok(p.messages.length < requests, `${p.messages.length} of ${requests} requests read while the peer read nothing`);
        // One read (up to 128 KiB of requests) may still come in after the pause.
        assert.ok(maxQueued <= maxBuffered + 10 * reply, `queued at most ${maxQueued} bytes (maxBuffered ${maxBuffered})`);
        p.peer.socket.resume();
        await until(() => p.messages.length === requests, 10_000, 'every request read');
        await until(() => p.peer.frames().length === requests, 10_000, 'every reply');
        assert.equal(p.closed(), undefined);
      } finally {
        p.done();
      }
    });

    test('a peer that pings but never reads gets at most one queued pong; the latest ping is answered once it reads', async () => {
      const p = await pair(role, { maxBuffered: 1 << 30 });
      try {
        p.peer.socket.pause();
        const pings = 200_000;
        let maxQueued = 0;
        const batch = 5000;
        for (let i = 0; i < pings; i += batch) {
          const frames: Buffer[] = [];
          for (let k = i; k < i + batch; k++) frames.push(p.peer.frame(OP.ping, Buffer.from(String(k).padStart(125, '.'))));
          p.peer.send(Buffer.concat(frames));
          await sleep(1);
          maxQueued = Math.max(maxQueued, p.conn.bufferedBytes);
        }
        await until(() => p.conn.reader.bytesIn === pings * (role === 'server' ? 131 : 127), 20_000, 'every ping read');
        maxQueued = Math.max(maxQueued, p.conn.bufferedBytes);
        assert.ok(maxQueued <= 2 * 127, `${maxQueued} bytes queued for ${pings} pings (${(pings * 127 / MiB).toFixed(1)} MiB of pongs)`);
        p.peer.socket.resume();
        const last = Buffer.from(String(pings - 1).padStart(125, '.'));
        await until(() => p.peer.frames().at(-1)?.payload.equals(last) ?? false, 10_000, 'the pong of the last ping');
        assert.ok(p.peer.frames().every((f) => f.opcode === OP.pong));
      } finally {
        p.done();
      }
    });
  });
}
