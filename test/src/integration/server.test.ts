import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, Errno, FLAG_NO_UNMAP, Kind, Op } from '@wsblk/shared';
import { MemoryBackend, TokenAuth, delayFilter } from '@wsblk/server';
import { ConnectError, RemoteDisk } from '@wsblk/client';
import { RawClient, frame, msgpack } from '../support/raw-client.js';
import { RecordingBackend, TEST_CTX, TcpProxy, compressible, io, pattern, startServer, type RunningServer } from '../support/server.js';

const MiB = 1 << 20;

async function withServer(
  exports: Record<string, RecordingBackend>,
  opts: { auth?: TokenAuth },
  fn: (s: RunningServer) => Promise<void>,
): Promise<void> {
  const s = await startServer(exports, opts);
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

const mem = (size = 16 * MiB, opts: { readOnly?: boolean } = {}) => new RecordingBackend(new MemoryBackend(size, opts));

describe('data through RemoteDisk', () => {
  for (const compress of ['none', 'lz4'] as const) {
    test(`writes read back byte for byte with compress=${compress}`, async () => {
      const backend = mem();
      await withServer({ disk0: backend }, {}, async (s) => {
        const disk = await RemoteDisk.connect({ url: s.url('disk0'), compress, connectTimeoutMs: 5000 });
        try {
          const a = compressible(256 << 10, 1);
          const b = pattern(64 << 10, 2);
          const c = pattern(512, 3);
          const results = await Promise.all([
            io(disk, { op: Op.Write, offset: 0, length: a.length, payload: a }),
            io(disk, { op: Op.Write, offset: MiB, length: b.length, payload: b }),
            io(disk, { op: Op.Write, offset: 15 * MiB + 1024, length: c.length, payload: c }),
          ]);
          assert.deepEqual(results.map((r) => r.status), [0, 0, 0]);
          const back = await Promise.all([
            io(disk, { op: Op.Read, offset: 0, length: a.length }),
            io(disk, { op: Op.Read, offset: MiB, length: b.length }),
            io(disk, { op: Op.Read, offset: 15 * MiB + 1024, length: c.length }),
            io(disk, { op: Op.Read, offset: 8 * MiB, length: 4096 }),
          ]);
          assert.ok(back[0]!.data!.equals(a));
          assert.ok(back[1]!.data!.equals(b));
          assert.ok(back[2]!.data!.equals(c));
          assert.ok(back[3]!.data!.equals(Buffer.alloc(4096)), 'never-written blocks read as zeroes');
          assert.ok(backend.callsOf('write')[0]!.data!.equals(a), 'the backend got the data decompressed');
          assert.equal((await io(disk, { op: Op.Flush, offset: 0, length: 0 })).status, 0);
          assert.equal(backend.callsOf('flush').length, 1);
          assert.equal(disk.info.size, 16 * MiB);
          assert.equal(disk.info.exportName, 'disk0');
        } finally {
          await disk.close();
        }
      });
    });
  }

  test('an all-zero write reaches the backend as WRITE_ZEROES that keeps the blocks allocated', async () => {
    const backend = mem();
    await withServer({ disk0: backend }, {}, async (s) => {
      const disk = await RemoteDisk.connect({ url: s.url('disk0'), connectTimeoutMs: 5000 });
      try {
        await io(disk, { op: Op.Write, offset: 0, length: 8192, payload: pattern(8192, 4) });
        const r = await io(disk, { op: Op.Write, offset: 4096, length: 4096, payload: Buffer.alloc(4096) });
        assert.equal(r.status, 0);
        assert.equal(backend.callsOf('write').length, 1, 'the zero write is not a WRITE');
        assert.deepEqual(backend.callsOf('writeZeroes').map((c) => [c.offset, c.length, c.noUnmap]), [[4096, 4096, true]]);
        const back = await io(disk, { op: Op.Read, offset: 0, length: 8192 });
        assert.ok(back.data!.equals(Buffer.concat([pattern(8192, 4).subarray(0, 4096), Buffer.alloc(4096)])));
      } finally {
        await disk.close();
      }
    });
  });

  test('discard and write-zeroes requests reach the backend with their flags', async () => {
    const backend = mem();
    await withServer({ disk0: backend }, {}, async (s) => {
      const disk = await RemoteDisk.connect({ url: s.url('disk0'), connectTimeoutMs: 5000 });
      try {
        await io(disk, { op: Op.Write, offset: 0, length: MiB, payload: pattern(MiB, 5) });
        assert.equal((await io(disk, { op: Op.Discard, offset: 0, length: 4096 })).status, 0);
        assert.equal((await io(disk, { op: Op.WriteZeroes, offset: 8192, length: 4096, flags: 0 })).status, 0);
        assert.deepEqual(backend.callsOf('discard').map((c) => [c.offset, c.length]), [[0, 4096]]);
        assert.deepEqual(backend.callsOf('writeZeroes').map((c) => [c.offset, c.length, c.noUnmap]), [[8192, 4096, false]]);
        const back = (await io(disk, { op: Op.Read, offset: 0, length: 16384 })).data!;
        assert.ok(back.subarray(0, 4096).equals(Buffer.alloc(4096)));
        assert.ok(back.subarray(4096, 8192).equals(pattern(MiB, 5).subarray(4096, 8192)));
        assert.ok(back.subarray(8192, 12288).equals(Buffer.alloc(4096)));
      } finally {
        await disk.close();
      }
    });
  });
});

describe('the backend sees who asks', () => {
  test('every backend call carries the session id, epoch and seq of its request', async () => {
    const backend = mem();
    await withServer({ disk0: backend }, {}, async (s) => {
      const c = await RawClient.connect(s.url('disk0'));
      try {
        const w = await c.hello();
        await c.roundTrip([
          { seq: 7, op: Op.Write, flags: 0, offset: 0, length: 512, payload: pattern(512, 1) },
          { seq: 8, op: Op.Read, flags: 0, offset: 0, length: 512 },
          { seq: 9, op: Op.Flush, flags: 0, offset: 0, length: 0 },
        ]);
        assert.deepEqual(backend.calls.map((call) => [call.op, call.ctx]), [
          ['write', { session: w.sessionId, epoch: w.epoch, seq: 7 }],
          ['read', { session: w.sessionId, epoch: w.epoch, seq: 8 }],
          ['flush', { session: w.sessionId, epoch: w.epoch, seq: 9 }],
        ]);
      } finally {
        c.terminate();
      }
    });
  });
});

describe('the backend info is read at use', () => {
  test('a size that grows after the welcome admits requests past the old end', async () => {
    const inner = new MemoryBackend(MiB);
    const backend = new RecordingBackend(inner);
    await withServer({ disk0: backend }, {}, async (s) => {
      const c = await RawClient.connect(s.url('disk0'));
      try {
        assert.equal((await c.hello()).size, MiB);
        const past = { seq: 1, op: Op.Read, flags: 0, offset: MiB, length: 4096 };
        assert.equal((await c.roundTrip([past])).get(1)!.status, Errno.EINVAL);
        (inner as { info: typeof inner.info }).info = { ...inner.info, size: 2 * MiB };
        assert.equal((await c.roundTrip([{ ...past, seq: 2 }])).get(2)!.status, 0, 'the new size counts at once');
      } finally {
        c.terminate();
      }
    });
  });
});

describe('lz4 on the wire', () => {
  test('a client that offers lz4 gets it, and compressible replies travel compressed', async () => {
    const backend = mem();
    await withServer({ disk0: backend }, {}, async (s) => {
      const c = await RawClient.connect(s.url('disk0'));
      try {
        const w = await c.hello({ features: ['lz4'] });
        assert.deepEqual(w.features, ['lz4']);
        const data = compressible(256 << 10, 9);
        const r = await c.roundTrip([{ seq: 1, op: Op.Write, flags: 0, offset: 0, length: data.length, payload: data }], true);
        assert.equal(r.get(1)!.status, 0);
        assert.ok(backend.callsOf('write')[0]!.data!.equals(data), 'the server decompressed the write');
        const before = c.sizes.length;
        const rr = await c.roundTrip([{ seq: 2, op: Op.Read, flags: 0, offset: 0, length: data.length }]);
        assert.ok(rr.get(2)!.data!.equals(data));
        assert.ok(c.sizes[before]! < data.length / 4, `the reply message is ${c.sizes[before]} bytes for ${data.length} of data`);
      } finally {
        c.terminate();
      }
    });
  });

  test('a client that does not offer lz4 gets plain replies', async () => {
    const backend = mem();
    await withServer({ disk0: backend }, {}, async (s) => {
      const c = await RawClient.connect(s.url('disk0'));
      try {
        const w = await c.hello({ features: [] });
        assert.deepEqual(w.features, []);
        const data = compressible(64 << 10, 9);
        await c.roundTrip([{ seq: 1, op: Op.Write, flags: 0, offset: 0, length: data.length, payload: data }]);
        const before = c.sizes.length;
        const rr = await c.roundTrip([{ seq: 2, op: Op.Read, flags: 0, offset: 0, length: data.length }]);
        assert.ok(rr.get(2)!.data!.equals(data));
        assert.ok(c.sizes[before]! > data.length);
      } finally {
        c.terminate();
      }
    });
  });
});

describe('auth at the upgrade', () => {
  const auth = () => {
    const a = new TokenAuth();
    a.add('rwtoken-disk0', { exports: new Set(['disk0']), readOnly: false });
    a.add('rotoken-disk0', { exports: new Set(['disk0']), readOnly: true });
    a.add('startoken-all', { exports: '*', readOnly: false });
    return a;
  };

  const cases: Array<{ what: string; token?: string; exp: string; status: number; body: RegExp }> = [
    { what: 'no token', exp: 'disk0', status: 401, body: /a bearer token is required/ },
    { what: 'a wrong token', token: 'not-a-token', exp: 'disk0', status: 401, body: /unknown token/ },
    { what: 'a token not granted the export', token: 'rwtoken-disk0', exp: 'disk1', status: 403, body: /token may not open export 'disk1'/ },
    { what: 'an unknown export', token: 'startoken-all', exp: 'nope', status: 404, body: /no export 'nope' \(exports: disk0, disk1\)/ },
    { what: 'a wrong token on an unknown export (no export names for strangers)', token: 'not-a-token', exp: 'nope', status: 401, body: /unknown token/ },
  ];
  for (const c of cases) {
    test(`${c.what} is refused with HTTP ${c.status} before any frame, and RemoteDisk gives up at once`, async () => {
      const b0 = mem();
      const b1 = mem();
      await withServer({ disk0: b0, disk1: b1 }, { auth: auth() }, async (s) => {
        const raw = await RawClient.refusal(s.url(c.exp), c.token ? { token: c.token } : {});
        assert.equal(raw.status, c.status);
        assert.equal(raw.opened, false, 'no WebSocket was opened');
        assert.match(raw.body, c.body);
        if (c.status === 401) assert.doesNotMatch(raw.body, /disk0|disk1|nope/, 'a 401 names no export');
        const proxy = await TcpProxy.start(s.port);
        try {
          await assert.rejects(
            RemoteDisk.connect({ url: proxy.url(c.exp), ...(c.token ? { token: c.token } : {}), connectTimeoutMs: 20_000 }),
            (e: unknown) => {
              assert.ok(e instanceof ConnectError, String(e));
              assert.equal(e.status, c.status);
              assert.equal(e.fatal, true);
              assert.match(e.message, c.body);
              return true;
            });
          assert.equal(proxy.accepted, 1, 'a refusal is not retried');
        } finally {
          await proxy.stop();
        }
        assert.equal(b0.calls.length + b1.calls.length, 0);
      });
    });
  }

  test('an upgrade without the wsblk subprotocol is refused with HTTP 400 before any frame', async () => {
    await withServer({ disk0: mem() }, {}, async (s) => {
      const none = await RawClient.refusal(s.url('disk0'), { protocols: [] });
      assert.deepEqual([none.status, none.opened], [400, false]);
      assert.match(none.body, /subprotocol wsblk\.v1 required \(client speaks none\)/);
      const old = await RawClient.refusal(s.url('disk0'), { protocols: ['wsblk.v0'] });
      assert.deepEqual([old.status, old.opened], [400, false]);
      assert.match(old.body, /client speaks wsblk\.v0/);
    });
  });

  test('a granted token opens the export it names', async () => {
    await withServer({ disk0: mem(), disk1: mem() }, { auth: auth() }, async (s) => {
      const d0 = await RemoteDisk.connect({ url: s.url('disk0'), token: 'rwtoken-disk0', connectTimeoutMs: 5000 });
      const d1 = await RemoteDisk.connect({ url: s.url('disk1'), token: 'startoken-all', connectTimeoutMs: 5000 });
      try {
        assert.equal(d0.info.readOnly, false);
        assert.equal(d1.info.exportName, 'disk1');
        assert.equal((await io(d0, { op: Op.Write, offset: 0, length: 512, payload: pattern(512, 1) })).status, 0);
      } finally {
        await d0.close();
        await d1.close();
      }
    });
  });

  test('a read-only token sees a read-only export: writes, discards and zeroes get EPERM and nothing is written', async () => {
    const backend = mem();
    await backend.write(TEST_CTX, 0, pattern(4096, 8), false);
    backend.calls.length = 0;
    await withServer({ disk0: backend }, { auth: auth() }, async (s) => {
      const disk = await RemoteDisk.connect({ url: s.url('disk0'), token: 'rotoken-disk0', connectTimeoutMs: 5000 });
      try {
        assert.equal(disk.info.readOnly, true);
        assert.deepEqual([disk.info.flush, disk.info.fua, disk.info.discard, disk.info.writeZeroes], [false, false, false, false]);
        const r = await Promise.all([
          io(disk, { op: Op.Write, offset: 0, length: 4096, payload: pattern(4096, 9) }),
          io(disk, { op: Op.Write, offset: 8192, length: 4096, payload: Buffer.alloc(4096) }),
          io(disk, { op: Op.Discard, offset: 0, length: 4096 }),
          io(disk, { op: Op.WriteZeroes, offset: 0, length: 4096, flags: FLAG_NO_UNMAP }),
        ]);
        assert.deepEqual(r.map((x) => x.status), [Errno.EPERM, Errno.EPERM, Errno.EPERM, Errno.EPERM]);
        const back = await io(disk, { op: Op.Read, offset: 0, length: 4096 });
        assert.equal(back.status, 0);
        assert.ok(back.data!.equals(pattern(4096, 8)), 'the data is unchanged');
        assert.deepEqual(backend.calls.map((c) => c.op), ['read'], 'only the read reached the backend');
      } finally {
        await disk.close();
      }
    });
  });

  test('a read-only export refuses writes whatever the token', async () => {
    const backend = mem(MiB, { readOnly: true });
    await withServer({ disk0: backend }, {}, async (s) => {
      const c = await RawClient.connect(s.url('disk0'));
      try {
        const w = await c.hello();
        assert.equal(w.readOnly, true);
        const r = await c.roundTrip([{ seq: 1, op: Op.Write, flags: 0, offset: 0, length: 512, payload: pattern(512, 1) }]);
        assert.equal(r.get(1)!.status, Errno.EPERM);
        assert.equal(backend.callsOf('write').length, 0);
      } finally {
        c.terminate();
      }
    });
  });
});

describe('bad requests get an error reply and the connection stays usable', () => {
  test('out-of-range reads get EINVAL, writes ENOSPC, oversize requests EOVERFLOW; nothing reaches the backend', async () => {
    const size = 4 * MiB;
    const backend = mem(size);
    await withServer({ disk0: backend }, {}, async (s) => {
      const c = await RawClient.connect(s.url('disk0'));
      try {
        const w = await c.hello({ maxPayload: 64 << 10 });
        assert.equal(w.maxPayload, 64 << 10, 'the smaller of both limits');
        const big = pattern(128 << 10, 1);
        const r = await c.roundTrip([
          { seq: 1, op: Op.Read, flags: 0, offset: size - 512, length: 1024 },
          { seq: 2, op: Op.Write, flags: 0, offset: size, length: 512, payload: pattern(512, 2) },
          { seq: 3, op: Op.Read, flags: 0, offset: 0, length: 128 << 10 },
          { seq: 4, op: Op.Write, flags: 0, offset: 0, length: big.length, payload: big },
          { seq: 5, op: Op.Discard, flags: 0, offset: size - 4096, length: 8192 },
          { seq: 6, op: Op.WriteZeroes, flags: 0, offset: size + 4096, length: 4096 },
          { seq: 7, op: Op.Read, flags: 0, offset: Number.MAX_SAFE_INTEGER - 1, length: 1 },
        ]);
        assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map((q) => r.get(q)!.status),
          [Errno.EINVAL, Errno.ENOSPC, Errno.EOVERFLOW, Errno.EOVERFLOW, Errno.EINVAL, Errno.ENOSPC, Errno.EINVAL]);
        assert.ok([...r.values()].every((x) => x.data === undefined));
        assert.equal(backend.calls.length, 0, 'nothing reached the backend');
        const ok = await c.roundTrip([
          { seq: 8, op: Op.Write, flags: 0, offset: size - 512, length: 512, payload: pattern(512, 3) },
          { seq: 9, op: Op.Read, flags: 0, offset: size - 512, length: 512 },
        ]);
        assert.equal(ok.get(8)!.status, 0);
        assert.ok(ok.get(9)!.data!.equals(pattern(512, 3)), 'the connection still works');
        assert.equal(c.closeInfo, undefined);
      } finally {
        c.terminate();
      }
    });
  });

  test('a backend failure becomes an errno reply, and the connection stays usable', async () => {
    const failing = new RecordingBackend(new MemoryBackend(MiB));
    failing.write = async () => { const e: NodeJS.ErrnoException = new Error('disk full'); e.code = 'ENOSPC'; throw e; };
    failing.flush = async () => { throw new Error('boom'); };
    await withServer({ disk0: failing }, {}, async (s) => {
      const c = await RawClient.connect(s.url('disk0'));
      try {
        await c.hello();
        const r = await c.roundTrip([
          { seq: 1, op: Op.Write, flags: 0, offset: 0, length: 512, payload: pattern(512, 1) },
          { seq: 2, op: Op.Flush, flags: 0, offset: 0, length: 0 },
          { seq: 3, op: Op.Read, flags: 0, offset: 0, length: 512 },
        ]);
        assert.equal(r.get(1)!.status, Errno.ENOSPC);
        assert.equal(r.get(2)!.status, Errno.EIO);
        assert.equal(r.get(3)!.status, 0);
      } finally {
        c.terminate();
      }
    });
  });
});

describe('protocol violations close only the offending connection', () => {
  test('a malformed frame closes that connection with 4000 and a reason while another client keeps working', async () => {
    const backend = mem();
    await withServer({ disk0: backend }, {}, async (s) => {
      const bad = await RawClient.connect(s.url('disk0'));
      const good = await RawClient.connect(s.url('disk0'));
      try {
        await bad.hello({ readOnly: true }); // good is the export's one writer
        await good.hello();
        bad.send(frame(Kind.Requests, msgpack([[1, 9, 0, 0, 512, 0, 0]])));
        const closed = await bad.closedWithin();
        assert.equal(closed.code, CloseCode.Malformed);
        assert.match(closed.reason, /^malformed message: requests\[0\]\.op: expected an integer in 0\.\.7, got 9/);
        const r = await good.roundTrip([{ seq: 1, op: Op.Write, flags: 0, offset: 0, length: 512, payload: pattern(512, 1) }, { seq: 2, op: Op.Read, flags: 0, offset: 0, length: 512 }]);
        assert.ok(r.get(2)!.data!.equals(pattern(512, 1)));
        assert.equal(good.closeInfo, undefined);
      } finally {
        bad.terminate();
        good.terminate();
      }
    });
  });

  test('a replies message with a truncated lz4 body closes the connection instead of crashing the server', async () => {
    await withServer({ disk0: mem() }, {}, async (s) => {
      const bad = await RawClient.connect(s.url('disk0'));
      await bad.hello({ readOnly: true }); // its lost connection would keep the writer lock
      bad.send(frame(Kind.Replies, msgpack([[1, 0, 1, 64]])));
      const closed = await bad.closedWithin();
      assert.equal(closed.code, CloseCode.Malformed);
      const other = await RawClient.connect(s.url('disk0'));
      try {
        const w = await other.hello();
        assert.equal(w.exportName, 'disk0', 'the server is still up');
      } finally {
        other.terminate();
      }
    });
  });

  test('garbage before the hello closes the connection with 4000', async () => {
    await withServer({ disk0: mem() }, {}, async (s) => {
      const c = await RawClient.connect(s.url('disk0'));
      c.send(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
      const closed = await c.closedWithin();
      assert.equal(closed.code, CloseCode.Malformed);
      assert.match(closed.reason, /^malformed message: /);
    });
  });

  test('a text frame closes the connection with 4000', async () => {
    await withServer({ disk0: mem() }, {}, async (s) => {
      const c = await RawClient.connect(s.url('disk0'));
      await c.hello();
      c.send('{"op":"read"}');
      const closed = await c.closedWithin();
      assert.equal(closed.code, CloseCode.Malformed);
      assert.equal(closed.reason, 'text messages are not part of the protocol');
    });
  });

  test('a request before the hello closes the connection with 4001 and nothing runs', async () => {
    const backend = mem();
    await withServer({ disk0: backend }, {}, async (s) => {
      const c = await RawClient.connect(s.url('disk0'));
      c.sendRequests([{ seq: 1, op: Op.Write, flags: 0, offset: 0, length: 512, payload: pattern(512, 1) }]);
      const closed = await c.closedWithin();
      assert.equal(closed.code, CloseCode.BadHello);
      assert.equal(closed.reason, 'expected hello, got requests');
      assert.equal(c.received.length, 0, 'no welcome, no reply');
      assert.equal(backend.calls.length, 0);
    });
  });

  test('a second hello closes the connection with 4000', async () => {
    await withServer({ disk0: mem() }, {}, async (s) => {
      const c = await RawClient.connect(s.url('disk0'));
      await c.hello();
      c.sendHello();
      const closed = await c.closedWithin();
      assert.equal(closed.code, CloseCode.Malformed);
      assert.equal(closed.reason, 'unexpected hello message');
    });
  });

  test('a hello of another protocol version is refused with a close that says so', async () => {
    await withServer({ disk0: mem() }, {}, async (s) => {
      const c = await RawClient.connect(s.url('disk0'));
      c.sendHello({ version: 2 });
      const closed = await c.closedWithin();
      assert.equal(closed.code, CloseCode.Malformed);
      assert.match(closed.reason, /hello\.version 2 is not supported/);
      assert.equal(c.received.length, 0);
    });
  });
});

describe('server close()', () => {
  test('requests in flight finish and get their replies before the socket closes', async () => {
    const inner = new RecordingBackend(new MemoryBackend(16 * MiB));
    const backend = new RecordingBackend(delayFilter(inner, 300, { ops: ['write', 'read'] }));
    const s = await startServer({ disk0: backend });
    const c = await RawClient.connect(s.url('disk0'));
    await c.hello();
    const data = pattern(MiB, 1);
    const started = backend.nextStart((x) => x.op === 'read');
    c.sendRequests([
      { seq: 1, op: Op.Write, flags: 0, offset: 0, length: data.length, payload: data },
      { seq: 2, op: Op.Read, flags: 0, offset: 4 * MiB, length: 4 * MiB },
    ]);
    await started;
    await s.close();
    const closed = await c.closedWithin();
    const replies = new Map(c.received.flatMap((e) => (e.msg.kind === 'replies' ? e.msg.replies.map((r) => [r.seq, { ...r, at: e.at }] as const) : [])));
    assert.equal(replies.get(1)?.status, 0, 'the write was answered');
    assert.equal(replies.get(2)?.status, 0, 'the read was answered');
    assert.equal(replies.get(2)?.data?.length, 4 * MiB, 'with all of its data');
    assert.ok(replies.get(2)!.at <= closed.at);
    assert.equal(closed.code, CloseCode.GoingAway);
    const landed = inner.callsOf('write');
    assert.equal(landed.length, 1);
    assert.ok(landed[0]!.end !== undefined && landed[0]!.error === undefined, 'the write landed');
    assert.ok(landed[0]!.end! <= replies.get(1)!.at, 'before its reply');
    await assert.rejects(RawClient.connect(s.url('disk0')), 'a closed server accepts no new connection');
  });
});

describe('server close() and connections already gone', () => {
  test('a write of a client that disconnected finishes before the backend is closed', async () => {
    const backend = new RecordingBackend(delayFilter(new MemoryBackend(4 * MiB), 300, { ops: ['write'] }));
    const s = await startServer({ disk0: backend });
    const c = await RawClient.connect(s.url('disk0'));
    await c.hello();
    const started = backend.nextStart();
    c.sendRequests([{ seq: 1, op: Op.Write, flags: 0, offset: 0, length: 4096, payload: pattern(4096, 1) }]);
    await started;
    c.terminate();
    await c.closed;
    await new Promise((r) => setTimeout(r, 50)); // the server sees the close
    await s.close();
    const w = backend.callsOf('write')[0]!;
    assert.ok(backend.closedAt !== undefined);
    assert.equal(backend.runningAtClose, 0, 'nothing ran when the backend was closed');
    assert.ok(w.end !== undefined && w.end <= backend.closedAt);
  });

  test('a write of a fenced connection finishes before the backend is closed', async () => {
    const backend = new RecordingBackend(delayFilter(new MemoryBackend(4 * MiB), 300, { ops: ['write'], offset: 0, count: 1 }));
    const s = await startServer({ disk0: backend });
    const a = await RawClient.connect(s.url('disk0'));
    const b = await RawClient.connect(s.url('disk0'));
    const wa = await a.hello();
    const started = backend.nextStart();
    a.sendRequests([{ seq: 1, op: Op.Write, flags: 0, offset: 0, length: 4096, payload: pattern(4096, 1) }]);
    await started;
    b.sendHello({ resume: wa.sessionId });
    await a.closedWithin();
    await s.close();
    b.terminate();
    assert.equal(backend.runningAtClose, 0, 'nothing ran when the backend was closed');
  });
});
