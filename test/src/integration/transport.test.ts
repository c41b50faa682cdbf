// RemoteDisk against a real StorageServer, with a TCP proxy in between to cut or hold the
// connection: replay after a drop, the I/O timeout, backpressure, close() and connect errors.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { Errno, Op } from '@wsblk/shared';
import { MemoryBackend, delayFilter } from '@wsblk/server';
import { ConnectError, RemoteDisk, type IoRequest } from '@wsblk/client';
import { RecordingBackend, TEST_CTX, TcpProxy, closedPort, io, pattern, sleep, startServer, waitFor } from '../support/server.js';

const MiB = 1 << 20;
const quick = { connectTimeoutMs: 5000, backoffInitialMs: 20, backoffMaxMs: 200 };

/** Submits a request and counts how often its callback runs. */
function tracked(disk: RemoteDisk, req: IoRequest) {
  const t = { calls: 0, status: -1, data: undefined as Buffer | undefined, done: undefined as unknown as Promise<void> };
  t.done = new Promise<void>((resolve) => {
    disk.submit(req, (status, data) => {
      t.calls++;
      t.status = status;
      t.data = data;
      resolve();
    });
  });
  return t;
}

describe('replay after a lost connection', () => {
  for (const compress of ['none', 'lz4'] as const) {
    test(`every request in flight when the connection drops completes exactly once with the right data (compress=${compress})`, async () => {
      const inner = new RecordingBackend(new MemoryBackend(16 * MiB));
      const backend = new RecordingBackend(delayFilter(inner, 150, { ops: ['write', 'read'] }));
      // Reads will look at blocks written before the test.
      for (let i = 0; i < 8; i++) await inner.inner.write(TEST_CTX, 8 * MiB + i * 65536, pattern(65536, 100 + i), false);
      const s = await startServer({ disk0: backend });
      const proxy = await TcpProxy.start(s.port);
      const disk = await RemoteDisk.connect({ url: proxy.url('disk0'), compress, ...quick });
      try {
        const sessionId = disk.stats.sessionId;
        const writes = Array.from({ length: 24 }, (_, i) => {
          const data = pattern(65536, i);
          return { offset: i * 65536, data, t: tracked(disk, { op: Op.Write, offset: i * 65536, length: 65536, flags: 0, payload: data }) };
        });
        const reads = Array.from({ length: 8 }, (_, i) => ({ i, t: tracked(disk, { op: Op.Read, offset: 8 * MiB + i * 65536, length: 65536, flags: 0 }) }));
        await backend.nextStart();
        proxy.dropAll();
        await Promise.all([...writes.map((w) => w.t.done), ...reads.map((r) => r.t.done)]);
        await sleep(50); // a second callback would show up here

        for (const w of writes) assert.deepEqual([w.t.calls, w.t.status], [1, 0], `write at ${w.offset}`);
        for (const r of reads) {
          assert.deepEqual([r.t.calls, r.t.status], [1, 0]);
          assert.ok(r.t.data!.equals(pattern(65536, 100 + r.i)), `read ${r.i} has its data`);
        }
        const st = disk.stats;
        assert.ok(st.reconnects >= 1, `reconnects ${st.reconnects}`);
        assert.ok(st.replayed >= 1, `replayed ${st.replayed}`);
        assert.equal(st.sessionId, sessionId, 'the session was resumed');
        assert.ok(st.epoch >= 2);
        assert.equal(st.inflight, 0);
        assert.equal(st.inflightBytes, 0);

        // Each write was applied once (replays of applied ones come from the dedup window), in order.
        const offsets = inner.callsOf('write').map((c) => c.offset).filter((o) => o < 8 * MiB);
        assert.deepEqual(offsets, writes.map((w) => w.offset));
        const backs = await Promise.all(writes.map((w) => io(disk, { op: Op.Read, offset: w.offset, length: 65536 })));
        writes.forEach((w, i) => assert.ok(backs[i]!.data!.equals(w.data), `data at ${w.offset}`));
      } finally {
        await disk.close();
        await proxy.stop();
        await s.close();
      }
    });
  }

  test('requests submitted while disconnected wait and go out after the reconnect', async () => {
    const backend = new RecordingBackend(new MemoryBackend(4 * MiB));
    const s = await startServer({ disk0: backend });
    const proxy = await TcpProxy.start(s.port);
    const disk = await RemoteDisk.connect({ url: proxy.url('disk0'), ...quick });
    try {
      const disconnected = new Promise((r) => disk.once('disconnected', r));
      await proxy.stop();
      await disconnected;
      assert.equal(disk.stats.connected, false);
      const w = tracked(disk, { op: Op.Write, offset: 0, length: 4096, flags: 0, payload: pattern(4096, 1) });
      await sleep(100);
      assert.equal(w.calls, 0, 'held while there is no connection');
      await proxy.restart();
      await w.done;
      assert.deepEqual([w.calls, w.status], [1, 0]);
      assert.ok(backend.callsOf('write')[0]!.data!.equals(pattern(4096, 1)));
    } finally {
      await disk.close();
      await proxy.stop();
      await s.close();
    }
  });
});

describe('I/O timeout', () => {
  test('with the server gone, pending requests fail with EIO after ioTimeoutMs and are not replayed later', async () => {
    const backend = new RecordingBackend(new MemoryBackend(4 * MiB));
    const s = await startServer({ disk0: backend });
    const proxy = await TcpProxy.start(s.port);
    const disk = await RemoteDisk.connect({ url: proxy.url('disk0'), ioTimeoutMs: 300, ...quick });
    try {
      await proxy.stop();
      const t0 = performance.now();
      const w = tracked(disk, { op: Op.Write, offset: 0, length: 4096, flags: 0, payload: pattern(4096, 1) });
      const r = tracked(disk, { op: Op.Read, offset: 0, length: 4096, flags: 0 });
      await Promise.all([w.done, r.done]);
      assert.deepEqual([w.status, r.status], [Errno.EIO, Errno.EIO]);
      assert.ok(performance.now() - t0 >= 250, 'not before the timeout');
      assert.equal(disk.stats.timedOut, 2);
      assert.equal(disk.stats.inflight, 0);

      await proxy.restart();
      await waitFor(() => disk.stats.connected, 5000, 'reconnect');
      const later = await io(disk, { op: Op.Write, offset: 8192, length: 4096, payload: pattern(4096, 2) });
      assert.equal(later.status, 0);
      assert.deepEqual(backend.callsOf('write').map((c) => c.offset), [8192], 'the timed-out write never reached the server');
      assert.deepEqual([w.calls, r.calls], [1, 1]);
    } finally {
      await disk.close();
      await proxy.stop();
      await s.close();
    }
  });

  test('with ioTimeoutMs 0 a request waits for the server however long it is gone', async () => {
    const backend = new RecordingBackend(new MemoryBackend(4 * MiB));
    const s = await startServer({ disk0: backend });
    const proxy = await TcpProxy.start(s.port);
    const disk = await RemoteDisk.connect({ url: proxy.url('disk0'), ...quick });
    try {
      await proxy.stop();
      const w = tracked(disk, { op: Op.Write, offset: 0, length: 4096, flags: 0, payload: pattern(4096, 3) });
      await sleep(1200);
      assert.equal(w.calls, 0);
      await proxy.restart();
      await w.done;
      assert.equal(w.status, 0);
    } finally {
      await disk.close();
      await proxy.stop();
      await s.close();
    }
  });
});

describe('backpressure', () => {
  test('bytes in flight never exceed maxInflightBytes while many writes are queued', async () => {
    const budget = 64 << 10;
    const size = 24 << 10; // two fit in the budget, three do not
    const inner = new MemoryBackend(16 * MiB);
    const backend = new RecordingBackend(delayFilter(inner, 10, { ops: ['write'] }));
    const s = await startServer({ disk0: backend });
    const disk = await RemoteDisk.connect({ url: s.url('disk0'), maxInflightBytes: budget, ...quick });
    try {
      let maxSeen = 0;
      let done = false;
      const sample = () => {
        maxSeen = Math.max(maxSeen, disk.stats.inflightBytes);
        if (!done) setImmediate(sample);
      };
      sample();
      const ts = Array.from({ length: 48 }, (_, i) => tracked(disk, { op: Op.Write, offset: i * size, length: size, flags: 0, payload: pattern(size, i) }));
      assert.ok(disk.stats.inflight === 48, 'all are accepted at once');
      await Promise.all(ts.map((t) => t.done));
      done = true;
      assert.ok(ts.every((t) => t.status === 0));
      assert.ok(maxSeen <= budget, `client had ${maxSeen} bytes in flight, budget ${budget}`);
      assert.ok(backend.maxRunningBytes <= budget, `server ran ${backend.maxRunningBytes} bytes at once`);
      assert.equal(backend.maxRunningBytes, 2 * size, 'the budget is used, not serialised');
      const back = await io(disk, { op: Op.Read, offset: 47 * size, length: size });
      assert.ok(back.data!.equals(pattern(size, 47)));
    } finally {
      await disk.close();
      await s.close();
    }
  });

  test('a request larger than the whole budget still goes, alone', async () => {
    const budget = 64 << 10;
    const backend = new RecordingBackend(delayFilter(new MemoryBackend(16 * MiB), 10, { ops: ['write'] }));
    const s = await startServer({ disk0: backend });
    const disk = await RemoteDisk.connect({ url: s.url('disk0'), maxInflightBytes: budget, ...quick });
    try {
      const ts = [
        tracked(disk, { op: Op.Write, offset: 0, length: 16384, flags: 0, payload: pattern(16384, 1) }),
        tracked(disk, { op: Op.Write, offset: MiB, length: 256 << 10, flags: 0, payload: pattern(256 << 10, 2) }),
        tracked(disk, { op: Op.Write, offset: 2 * MiB, length: 16384, flags: 0, payload: pattern(16384, 3) }),
      ];
      await Promise.all(ts.map((t) => t.done));
      assert.deepEqual(ts.map((t) => t.status), [0, 0, 0]);
      assert.equal(backend.maxRunningBytes, 256 << 10, 'nothing ran beside the big one');
      assert.deepEqual(backend.callsOf('write').map((c) => c.offset), [0, MiB, 2 * MiB]);
    } finally {
      await disk.close();
      await s.close();
    }
  });
});

describe('large batches', () => {
  test('a whole default budget of 4 MiB reads answered at once arrives (replies are split below the 64 MiB message limit)', async () => {
    const s = await startServer({ disk0: new MemoryBackend(64 * MiB) });
    const disk = await RemoteDisk.connect({ url: s.url('disk0'), ...quick });
    try {
      const ts = Array.from({ length: 16 }, (_, i) => tracked(disk, { op: Op.Read, offset: i * 4 * MiB, length: 4 * MiB, flags: 0 }));
      const all = Promise.all(ts.map((t) => t.done));
      const result = await Promise.race([all.then(() => 'done'), sleep(5000).then(() => 'stuck')]);
      assert.equal(result, 'done');
      assert.ok(ts.every((t) => t.status === 0 && t.data!.length === 4 * MiB));
      assert.equal(disk.stats.reconnects, 0, 'the connection was never lost');
    } finally {
      await disk.close(100);
      await s.close();
    }
  });

  test('more requests than fit in one message (4096 records) all complete', async () => {
    const backend = new RecordingBackend(new MemoryBackend(MiB));
    const s = await startServer({ disk0: backend });
    const disk = await RemoteDisk.connect({ url: s.url('disk0'), ...quick });
    try {
      const ts = Array.from({ length: 5000 }, () => tracked(disk, { op: Op.Flush, offset: 0, length: 0, flags: 0 }));
      await Promise.all(ts.map((t) => t.done));
      assert.ok(ts.every((t) => t.calls === 1 && t.status === 0));
      assert.equal(backend.callsOf('flush').length, 5000);
      // Submitted in one turn: one message of 4096 records and one of the other 904.
      const st = disk.stats;
      assert.deepEqual([st.requestsSent, st.messagesSent, st.repliesReceived], [5000, 2, 5000]);
      assert.ok(st.messagesReceived >= 2 && st.messagesReceived <= 5000, `${st.messagesReceived} reply messages`);
    } finally {
      await disk.close();
      await s.close();
    }
  });
});

describe('close()', () => {
  test('close() waits for outstanding requests up to its timeout, then fails the rest with ESHUTDOWN', async () => {
    const backend = new RecordingBackend(delayFilter(new MemoryBackend(4 * MiB), 800, { ops: ['write'], offset: 0 }));
    const s = await startServer({ disk0: backend });
    const disk = await RemoteDisk.connect({ url: s.url('disk0'), ...quick });
    try {
      const slow = tracked(disk, { op: Op.Write, offset: 0, length: 4096, flags: 0, payload: pattern(4096, 1) });
      const fast = tracked(disk, { op: Op.Write, offset: 8192, length: 4096, flags: 0, payload: pattern(4096, 2) });
      await disk.close(200);
      assert.deepEqual([fast.calls, fast.status], [1, 0], 'a request answered within the timeout completes normally');
      assert.deepEqual([slow.calls, slow.status], [1, Errno.ESHUTDOWN]);
      const after = tracked(disk, { op: Op.Read, offset: 0, length: 4096, flags: 0 });
      await after.done;
      assert.equal(after.status, Errno.ESHUTDOWN, 'a request after close() fails at once');
      assert.equal(disk.stats.connected, false);
      await disk.close(); // twice is fine
    } finally {
      await s.close();
    }
  });

  test('close() while a reconnect is under way leaves no connection behind', async () => {
    const s = await startServer({ disk0: new MemoryBackend(MiB) });
    const proxy = await TcpProxy.start(s.port);
    const disk = await RemoteDisk.connect({ url: proxy.url('disk0'), ...quick });
    try {
      proxy.hold();
      proxy.dropAll();
      await waitFor(() => proxy.accepted >= 2, 5000, 'reconnect attempt');
      await disk.close();
      proxy.release();
      await sleep(300);
      assert.equal(disk.stats.connected, false);
      assert.equal(proxy.openConnections, 0, 'the reconnect that was under way did not stay open');
    } finally {
      await proxy.stop();
      await s.close();
    }
  });
});

describe('fencing seen from RemoteDisk', () => {
  test('a fenced RemoteDisk fails new requests instead of holding them forever', async () => {
    const s = await startServer({ disk0: new MemoryBackend(MiB) });
    const first = await RemoteDisk.connect({ url: s.url('disk0'), ...quick });
    const fenced = new Promise<void>((r) => first.once('fenced', () => r()));
    const second = await RemoteDisk.connect({ url: s.url('disk0'), resumeSession: first.stats.sessionId, ...quick });
    try {
      await fenced;
      const late = tracked(first, { op: Op.Write, offset: 0, length: 512, flags: 0, payload: pattern(512, 1) });
      const result = await Promise.race([late.done.then(() => late.status), sleep(1000).then(() => 'no answer')]);
      assert.equal(result, Errno.EIO);
    } finally {
      await first.close(100);
      await second.close();
      await s.close();
    }
  });
});

describe('connect errors', () => {
  test('connecting to a closed port fails with a ConnectError that says so, within connectTimeoutMs', async () => {
    const port = await closedPort();
    const t0 = performance.now();
    await assert.rejects(RemoteDisk.connect({ url: `ws://127.0.0.1:${port}/disk0`, connectTimeoutMs: 1000 }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.match(e.message, /connection refused \(is the server running\?\)/);
      assert.match(e.message, /gave up after 1 s/);
      assert.equal(e.fatal, false);
      return true;
    });
    const elapsed = performance.now() - t0;
    assert.ok(elapsed < 1000 + 250, `gave up after ${Math.round(elapsed)} ms`);
  });

  test('a URL that is not ws:// with an export fails at once and fatally', async () => {
    for (const url of ['http://127.0.0.1:1/disk0', 'ws://127.0.0.1:1/', 'not a url']) {
      await assert.rejects(RemoteDisk.connect({ url, connectTimeoutMs: 60_000 }), (e: unknown) => e instanceof ConnectError && e.fatal, url);
    }
  });
});
