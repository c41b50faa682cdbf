// A client's frames are masked with a random key per frame (RFC 6455 5.3), over a real loopback
// socket: the peer reads them raw. The payloads arrive exact, the caller's buffers are never
// written (they may be ublk tag buffers or pooled payloads others still read), and the pooled
// masked copies go back to the pool once the kernel has them, on the sendv path and without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bytes, rng, between } from '../support/random.js';
import { sendv as realSendv } from '@wsblk/native';
import { RecordingPool, pair, until } from '../support/ws-pair.js';

const KiB = 1024;
const OP = { binary: 2, close: 8, ping: 9 } as const;

for (const direct of [true, false]) {
  test(`client frames carry a random key each, payloads exact, the caller's buffers untouched (${direct ? 'sendv' : 'socket.write'})`, async () => {
    const pool = new RecordingPool(64 << 20, 0);
    const p = await pair('client', { pool, ...(direct ? {} : { sendv: undefined }) });
    try {
      const r = rng(direct ? 1 : 2);
      const sent: Buffer[][] = [];
      const copies: Buffer[][] = [];
      const n = 300;
      for (let i = 0; i < n; i++) {
        const parts = Array.from({ length: between(r, 1, 3) }, (_, k) => {
          const q = r();
          return bytes(q < 0.5 ? between(r, 0, 200) : q < 0.9 ? between(r, 201, 70 * KiB) : between(r, 70 * KiB, 300 * KiB), i * 4 + k);
        });
        // Parts that are views at odd offsets of a larger buffer, as a batch of records is.
        if (i % 5 === 0) parts.push(Buffer.concat([Buffer.alloc(3), bytes(5000, i)]).subarray(3));
        sent.push(parts);
        copies.push(parts.map((b) => Buffer.from(b)));
        p.conn.send(parts);
      }
      p.conn.ping();
      await until(() => p.peer.frames().length === n + 1, 10_000, 'every frame at the peer');
      const frames = p.peer.frames();
      const keys = new Set<number>();
      frames.forEach((f, i) => {
        assert.ok(f.key, `frame ${i} masked`);
        keys.add(f.key.readUInt32BE(0));
        if (i < n) assert.ok(f.payload.equals(Buffer.concat(copies[i]!)), `frame ${i}: payload exact`);
        else assert.equal(f.opcode, OP.ping);
      });
      assert.ok(keys.size >= n - 2, `${keys.size} distinct keys in ${n + 1} frames`);
      for (let i = 0; i < n; i++) sent[i]!.forEach((b, k) => assert.ok(b.equals(copies[i]![k]!), `message ${i} part ${k} written over`));
      // The masked copies that were not built in the writer's scratch buffer (frames of 64 KiB
      // and more while the socket's queue held bytes, or over 256 KiB) came from the pool and went back to it.
      await until(() => p.conn.bufferedBytes === 0, 5000, 'the queue drained');
      const pooled = pool.taken.filter((x) => x >= 64 * KiB).length;
      assert.ok(pooled > 10, `${pooled} pooled copies`);
      // Each buffer the pool made is free again (one taken, sent and given back may have been taken again).
      await until(() => pool.stats.freeBuffers === pool.stats.allocated, 5000, `every pooled copy back (${pool.stats.freeBuffers} of ${pool.stats.allocated} buffers)`);
      p.conn.close(1000, 'bye');
      await until(() => p.peer.frames().some((f) => f.opcode === OP.close), 5000, 'the close frame');
      assert.ok(p.peer.frames().at(-1)!.key, 'the close frame is masked too');
    } finally {
      p.done();
    }
  });
}

test('a masked frame the kernel takes only part of keeps its bytes: the next message is built elsewhere, both arrive exact', async () => {
  // The writer builds masked frames in a scratch buffer it reuses once the kernel took a frame
  // whole. Here the first sendv takes only 1000 bytes: the rest waits in the socket's queue as a
  // view of that scratch, so the next message must not be built in it.
  let calls = 0;
  const partial = (fd: number, bufs: readonly Buffer[]): number => {
    calls++;
    if (calls === 1) return realSendv(fd, [bufs[0]!.subarray(0, 1000)]);
    return realSendv(fd, bufs);
  };
  const p = await pair('client', { sendv: partial });
  try {
    const a = bytes(20 * KiB, 1);
    const b = bytes(20 * KiB, 2);
    const c = bytes(3 * KiB, 3);
    p.conn.send([a]);
    p.conn.send([b]);
    await until(() => p.conn.bufferedBytes === 0, 5000, 'the queue drained');
    p.conn.send([c]); // queue empty again: built in a (new) scratch buffer, sent at once
    await until(() => p.peer.frames().length === 3, 5000, 'three frames at the peer');
    const got = p.peer.frames().map((f) => f.payload);
    assert.ok(got[0]!.equals(a), 'the partly sent frame arrives whole and exact');
    assert.ok(got[1]!.equals(b));
    assert.ok(got[2]!.equals(c));
    assert.ok(calls >= 2, `sendv called ${calls} times`);
  } finally {
    p.done();
  }
});
