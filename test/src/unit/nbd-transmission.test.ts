import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Errno, FLAG_FUA, FLAG_NO_UNMAP, Op } from '@wsblk/shared';
import { NbdExport, type NbdExportOptions } from '@wsblk/client';
import { MemoryTarget, type MemoryTargetOptions } from '../support/memory-target.js';
import { CMD, CMD_FLAG, RawNbdClient, requestHeader } from './nbd-raw-client.js';

const KiB = 1024;
const MiB = 1 << 20;
const SIZE = 16 * MiB;
const EPERM = 1;
const EIO = 5;
const EINVAL = 22;
const ENOSPC = 28;

interface Env {
  path: string;
  target: MemoryTarget;
  exp: NbdExport;
  client: RawNbdClient;
}

async function withClient(
  options: Partial<MemoryTargetOptions>,
  fn: (env: Env) => Promise<void>,
  exportOptions: NbdExportOptions = {},
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'nbd-tx-'));
  const path = join(dir, 'nbd.sock');
  const target = new MemoryTarget({ size: SIZE, record: true, ...options });
  const exp = new NbdExport(target, exportOptions);
  await exp.listen(path);
  const client = await RawNbdClient.ready(path);
  try {
    await fn({ path, target, exp, client });
  } finally {
    client.close();
    await exp.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a written range reads back; untouched ranges read as zeroes', () =>
  withClient({}, async ({ client }) => {
    const data = randomBytes(12345);
    assert.equal((await client.call(CMD.write, 1000, data.length, 0, data)).error, 0);
    const r = await client.call(CMD.read, 1000, data.length);
    assert.equal(r.error, 0);
    assert.deepEqual(r.data, data);
    assert.deepEqual((await client.call(CMD.read, 8 * MiB, 4096)).data, Buffer.alloc(4096));
  }));

test('the cookie comes back unchanged, all 64 bits of it', () =>
  withClient({}, async ({ client }) => {
    client.request(CMD.read, 0xfedcba9876543210n, 0, 16);
    const r = await client.readReply();
    assert.equal(r.cookie, 0xfedcba9876543210n);
  }));

test('write past the end fails with ENOSPC and its payload is consumed', () =>
  withClient({}, async ({ client, target }) => {
    const payload = Buffer.alloc(8192, 0xee);
    assert.equal((await client.call(CMD.write, SIZE - 4096, 8192, 0, payload)).error, ENOSPC);
    // An offset beyond 2^53 is out of range too, not a rounding accident.
    assert.equal((await client.call(CMD.write, 2 ** 60, 512, 0, Buffer.alloc(512))).error, ENOSPC);
    // The stream is still in step: the next request parses.
    assert.equal((await client.call(CMD.read, 0, 4096)).error, 0);
    assert.equal(target.log.filter((r) => r.op === Op.Write).length, 0);
  }));

test('read, trim past the end fail with EINVAL; write zeroes past the end with ENOSPC', () =>
  withClient({}, async ({ client }) => {
    assert.equal((await client.call(CMD.read, SIZE - 512, 1024)).error, EINVAL);
    assert.equal((await client.call(CMD.read, SIZE, 1)).error, EINVAL);
    assert.equal((await client.call(CMD.trim, SIZE - 512, 1024)).error, EINVAL);
    assert.equal((await client.call(CMD.writeZeroes, SIZE - 512, 1024)).error, ENOSPC);
    assert.equal((await client.call(CMD.read, SIZE - 512, 512)).error, 0);
  }));

test('writes to a read-only export fail with EPERM and keep the stream in step', () =>
  withClient({ readOnly: true }, async ({ client, target }) => {
    assert.equal((await client.call(CMD.write, 0, 4096, 0, Buffer.alloc(4096, 1))).error, EPERM);
    assert.equal((await client.call(CMD.trim, 0, 4096)).error, EPERM);
    assert.equal((await client.call(CMD.writeZeroes, 0, 4096)).error, EPERM);
    assert.equal((await client.call(CMD.read, 0, 4096)).error, 0);
    assert.deepEqual(target.log.map((r) => r.op), [Op.Read]);
  }));

test('unknown commands and flags fail with EINVAL', () =>
  withClient({}, async ({ client }) => {
    assert.equal((await client.call(42, 0, 0)).error, EINVAL);
    assert.equal((await client.call(CMD.cache, 0, 4096)).error, EINVAL);
    assert.equal((await client.call(CMD.blockStatus, 0, 4096)).error, EINVAL);
    assert.equal((await client.call(CMD.read, 0, 4096, CMD_FLAG.df)).error, EINVAL);
    assert.equal((await client.call(CMD.read, 0, 4096, 0x8000)).error, EINVAL);
    assert.equal((await client.call(CMD.write, 0, 512, CMD_FLAG.noHole, Buffer.alloc(512))).error, EINVAL);
    assert.equal((await client.call(CMD.flush, 0, 0, CMD_FLAG.fua)).error, EINVAL);
    assert.equal((await client.call(CMD.read, 0, 4096)).error, 0);
  }));

test('commands the target lacks fail with EINVAL: FUA, flush, trim, write zeroes', () =>
  withClient({ fua: false, flush: false, discard: false, writeZeroes: false }, async ({ client, target }) => {
    assert.equal((await client.call(CMD.write, 0, 512, CMD_FLAG.fua, Buffer.alloc(512))).error, EINVAL);
    assert.equal((await client.call(CMD.flush, 0, 0)).error, EINVAL);
    assert.equal((await client.call(CMD.trim, 0, 4096)).error, EINVAL);
    assert.equal((await client.call(CMD.writeZeroes, 0, 4096)).error, EINVAL);
    assert.equal(target.log.length, 0);
  }));

test('FUA, NO_HOLE and FLUSH reach the target as flags and ops', () =>
  withClient({}, async ({ client, target }) => {
    assert.equal((await client.call(CMD.write, 0, 4096, CMD_FLAG.fua, Buffer.alloc(4096, 1))).error, 0);
    assert.equal((await client.call(CMD.writeZeroes, 4096, 4096, CMD_FLAG.noHole | CMD_FLAG.fua)).error, 0);
    assert.equal((await client.call(CMD.writeZeroes, 8192, 4096)).error, 0);
    assert.equal((await client.call(CMD.trim, 12288, 4096, CMD_FLAG.fua)).error, 0);
    assert.equal((await client.call(CMD.flush, 0, 0)).error, 0);
    assert.equal((await client.call(CMD.write, 16384, 512, 0, Buffer.alloc(512, 1))).error, 0);
    assert.deepEqual(target.log, [
      { op: Op.Write, offset: 0, length: 4096, flags: FLAG_FUA },
      { op: Op.WriteZeroes, offset: 4096, length: 4096, flags: FLAG_FUA | FLAG_NO_UNMAP },
      { op: Op.WriteZeroes, offset: 8192, length: 4096, flags: 0 },
      { op: Op.Discard, offset: 12288, length: 4096, flags: FLAG_FUA },
      { op: Op.Flush, offset: 0, length: 0, flags: 0 },
      { op: Op.Write, offset: 16384, length: 512, flags: 0 },
    ]);
  }));

test('trimmed and zeroed ranges read back as zeroes', () =>
  withClient({}, async ({ client }) => {
    const data = Buffer.alloc(256 * KiB, 0xab);
    await client.call(CMD.write, 0, data.length, 0, data);
    assert.equal((await client.call(CMD.trim, 0, 100 * KiB)).error, 0);
    assert.equal((await client.call(CMD.writeZeroes, 150 * KiB, 50 * KiB)).error, 0);
    const r = (await client.call(CMD.read, 0, data.length)).data!;
    assert.deepEqual(r.subarray(0, 100 * KiB), Buffer.alloc(100 * KiB));
    assert.deepEqual(r.subarray(100 * KiB, 150 * KiB), Buffer.alloc(50 * KiB, 0xab));
    assert.deepEqual(r.subarray(150 * KiB, 200 * KiB), Buffer.alloc(50 * KiB));
    assert.deepEqual(r.subarray(200 * KiB), Buffer.alloc(56 * KiB, 0xab));
  }));

test('target errors reach the client as NBD errors; ones NBD lacks become EIO', () =>
  withClient({}, async ({ client, target }) => {
    target.injectFault((req) => (req.op === Op.Read ? Errno.EIO : req.op === Op.Flush ? Errno.ETIMEDOUT : req.op === Op.Write ? Errno.ENOSPC : 0));
    assert.equal((await client.call(CMD.read, 0, 4096)).error, EIO);
    assert.equal((await client.call(CMD.flush, 0, 0)).error, EIO);
    assert.equal((await client.call(CMD.write, 0, 512, 0, Buffer.alloc(512))).error, ENOSPC);
    target.injectFault(null);
    assert.equal((await client.call(CMD.read, 0, 4096)).error, 0);
  }));

test('READ and WRITE larger than the target max payload are split and reassembled in order', () =>
  withClient({ maxPayload: 64 * KiB }, async ({ client, target }) => {
    const data = randomBytes(200 * KiB + 3);
    assert.equal((await client.call(CMD.write, 4096, data.length, CMD_FLAG.fua, data)).error, 0);
    const writes = target.log.filter((r) => r.op === Op.Write);
    assert.deepEqual(writes.map((w) => [w.offset, w.length, w.flags]), [
      [4096, 64 * KiB, FLAG_FUA],
      [4096 + 64 * KiB, 64 * KiB, FLAG_FUA],
      [4096 + 128 * KiB, 64 * KiB, FLAG_FUA],
      [4096 + 192 * KiB, 8 * KiB + 3, FLAG_FUA],
    ]);
    const r = await client.call(CMD.read, 4096, data.length);
    assert.equal(r.error, 0);
    assert.deepEqual(r.data, data);
    assert.equal(target.log.filter((x) => x.op === Op.Read).length, 4);
  }));

test('a split READ with one failed piece fails as a whole, without data', () =>
  withClient({ maxPayload: 64 * KiB }, async ({ client, target }) => {
    target.injectFault((req) => (req.op === Op.Read && req.offset === 64 * KiB ? Errno.EIO : 0));
    const r = await client.call(CMD.read, 0, 192 * KiB);
    assert.equal(r.error, EIO);
    assert.equal(r.data, undefined);
    assert.equal((await client.call(CMD.read, 0, 4096)).error, 0);
  }));

test('READ and WRITE above 32 MiB fail with EINVAL, the WRITE payload skipped', () =>
  withClient({ size: 64 * MiB }, async ({ client, target }) => {
    const big = 32 * MiB + 4096;
    assert.equal((await client.call(CMD.read, 0, big)).error, EINVAL);
    assert.equal((await client.call(CMD.write, 0, big, 0, Buffer.alloc(big, 1))).error, EINVAL);
    assert.equal((await client.call(CMD.read, 0, 4096)).error, 0);
    assert.equal(target.log.filter((r) => r.op === Op.Write).length, 0);
  }));

test('zero-length requests succeed without reaching the target', () =>
  withClient({}, async ({ client, target }) => {
    assert.deepEqual(await client.call(CMD.read, 0, 0).then((r) => [r.error, r.data]), [0, undefined]);
    assert.equal((await client.call(CMD.write, 4096, 0, 0)).error, 0);
    assert.equal((await client.call(CMD.trim, SIZE, 0)).error, 0);
    assert.equal(target.log.length, 0);
  }));

test('bad request magic closes the connection', () =>
  withClient({}, async ({ client }) => {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x12345678, 0);
    client.write(h);
    assert.equal(await client.closedByServer(), true);
  }));

test('replies come back out of order, each with its own cookie and data', () =>
  withClient({}, async ({ client, target }) => {
    target.write(0, randomBytes(1 * MiB));
    const expected = new Map<bigint, Buffer>();
    for (let i = 0; i < 200; i++) {
      const offset = (i * 4099) % (1 * MiB - 8192);
      const length = 1 + ((i * 37) % 8000);
      expected.set(BigInt(i) << 40n, target.read(offset, length));
      client.request(CMD.read, BigInt(i) << 40n, offset, length);
    }
    for (let i = 0; i < 200; i++) {
      const r = await client.readReply();
      assert.equal(r.error, 0);
      assert.deepEqual(r.data, expected.get(r.cookie));
      expected.delete(r.cookie);
    }
    assert.equal(expected.size, 0);
  }));

test('DISC lets outstanding requests finish, then closes', () =>
  withClient({}, async ({ client, target }) => {
    target.hold();
    client.request(CMD.write, 1n, 0, 4096, 0, Buffer.alloc(4096, 9));
    client.request(CMD.read, 2n, 0, 4096);
    client.request(CMD.disc, 3n, 0, 0);
    // Requests after DISC are ignored.
    client.request(CMD.read, 4n, 0, 4096);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(target.pending, 2);
    target.release();
    const a = await client.readReply();
    const b = await client.readReply();
    assert.deepEqual([a.cookie, b.cookie].sort(), [1n, 2n]);
    assert.equal(a.error + b.error, 0);
    assert.equal(await client.closedByServer(), true);
    assert.deepEqual(target.read(0, 4096), Buffer.alloc(4096, 9));
  }));

test('a client closing its side still gets its outstanding replies', () =>
  withClient({}, async ({ client, target }) => {
    target.hold();
    client.request(CMD.read, 5n, 0, 4096);
    client.socket.end();
    await new Promise((r) => setTimeout(r, 20));
    target.release();
    const r = await client.readReply();
    assert.equal(r.cookie, 5n);
    assert.equal(await client.closedByServer(), true);
  }));

test('reading stops while too many bytes are outstanding, and resumes when they drain', () =>
  withClient(
    {},
    async ({ client, target }) => {
      target.hold();
      const n = 64;
      for (let i = 0; i < n; i++) client.request(CMD.write, BigInt(i), i * 64 * KiB, 64 * KiB, 0, Buffer.alloc(64 * KiB, i));
      await new Promise((r) => setTimeout(r, 100));
      // 256 KiB of budget: a handful of 64 KiB writes, not all 64.
      assert.ok(target.pending >= 4 && target.pending <= 6, `pending ${target.pending}`);
      target.release();
      const seen = new Set<bigint>();
      for (let i = 0; i < n; i++) {
        const r = await client.readReply();
        assert.equal(r.error, 0);
        seen.add(r.cookie);
      }
      assert.equal(seen.size, n);
      assert.deepEqual(target.read(63 * 64 * KiB, 64 * KiB), Buffer.alloc(64 * KiB, 63));
    },
    { maxBufferedBytes: 256 * KiB },
  ));

test('several clients use the export at once, each with its own state', () =>
  withClient({}, async ({ path, client }) => {
    const others = await Promise.all([RawNbdClient.ready(path), RawNbdClient.ready(path, 'mem')]);
    const all = [client, ...others];
    await Promise.all(
      all.map(async (c, i) => {
        const data = Buffer.alloc(64 * KiB, i + 1);
        for (let k = 0; k < 16; k++) {
          assert.equal((await c.call(CMD.write, i * MiB + k * 64 * KiB, data.length, 0, data)).error, 0);
        }
        const r = await c.call(CMD.read, i * MiB, 64 * KiB);
        assert.deepEqual(r.data, data);
      }),
    );
    for (const c of others) c.close();
  }));

test('requests arriving one byte at a time still parse', () =>
  withClient({}, async ({ client }) => {
    const payload = randomBytes(100);
    const w = requestHeader(CMD.write, 11n, 4000, payload.length);
    const stream = Buffer.concat([w, payload]);
    for (let i = 0; i < stream.length; i++) {
      client.write(stream.subarray(i, i + 1));
      await new Promise((r) => setImmediate(r));
    }
    const r = await client.readReply();
    assert.deepEqual([r.cookie, r.error], [11n, 0]);
    assert.deepEqual((await client.call(CMD.read, 4000, 100)).data, payload);
  }));

test('a target that throws fails that request with EIO and the connection lives on', () =>
  withClient({}, async ({ client, target }) => {
    const submit = target.submit.bind(target);
    target.submit = (req, cb) => {
      if (req.op === Op.Flush) throw new Error('boom');
      submit(req, cb);
    };
    assert.equal((await client.call(CMD.flush, 0, 0)).error, EIO);
    assert.equal((await client.call(CMD.read, 0, 512)).error, 0);
  }));

test('a burst of requests followed by a half-close is answered in full despite backpressure', () =>
  withClient(
    {},
    async ({ client }) => {
      const n = 100;
      for (let i = 0; i < n; i++) client.request(CMD.write, BigInt(i), i * 16 * KiB, 16 * KiB, 0, Buffer.alloc(16 * KiB, i));
      client.socket.end();
      const seen = new Set<bigint>();
      for (let i = 0; i < n; i++) {
        const r = await client.readReply();
        assert.equal(r.error, 0);
        seen.add(r.cookie);
      }
      assert.equal(seen.size, n);
      assert.equal(await client.closedByServer(), true);
    },
    { maxBufferedBytes: 64 * KiB },
  ));
