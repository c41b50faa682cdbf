// Pooled buffers on the data path (shared/src/pool.ts): NBD write payloads come from the pool
// and go back when the server has answered; READ replies of 32 KiB and more are read into
// pooled frames that RemoteDisk (lendReads) lends to the NBD transmission, which keeps them
// until fio's socket has taken them. A buffer reused too early would show as wrong data here:
// every byte read is checked against a model, with many requests in flight at once, and with
// the NBD client gone while lent data is still queued.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileBackend, MemoryBackend, delayFilter } from '@wsblk/server';
import { NbdExport, RemoteDisk } from '@wsblk/client';
import { Op, bufferPool } from '@wsblk/shared';
import { CMD, RawNbdClient } from '../unit/nbd-raw-client.js';
import { io, sleep, startServer } from '../support/server.js';
import { rng, between, bytes } from '../support/random.js';

/** n pseudo-random bytes, seeded from the test's generator. */
const fill = (next: () => number, n: number): Buffer => bytes(n, between(next, 0, 0x7fffffff));

const KiB = 1024;
const MiB = 1 << 20;
const SIZE = 64 * MiB;

async function withStack(fn: (env: { path: string; model: Buffer; client: RawNbdClient }) => Promise<void>): Promise<void> {
  const s = await startServer({ disk0: new MemoryBackend(SIZE) });
  const disk = await RemoteDisk.connect({ url: s.url('disk0'), connectTimeoutMs: 5000, lendReads: true });
  const dir = mkdtempSync(join(tmpdir(), 'wsblk-lent-'));
  const path = join(dir, 'nbd.sock');
  const exp = new NbdExport(disk, {});
  await exp.listen(path);
  const client = await RawNbdClient.ready(path);
  try {
    await fn({ path, model: Buffer.alloc(SIZE), client });
  } finally {
    client.close();
    await exp.close();
    await disk.close();
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Writes `mib` MiB of random data from offset 0, one request per MiB, into the disk and the model. */
async function writeFirst(client: RawNbdClient, model: Buffer, next: () => number, mib: number): Promise<void> {
  for (let i = 0; i < mib; i++) {
    const data = fill(next, MiB);
    assert.equal((await client.call(CMD.write, i * MiB, MiB, 0, data)).error, 0);
    data.copy(model, i * MiB);
  }
}

/** Sends every request at once, then reads the replies (in whatever order they come). */
async function pipeline(client: RawNbdClient, reqs: Array<{ type: number; offset: number; length: number; payload?: Buffer }>): Promise<Map<bigint, Buffer | undefined>> {
  const out = new Map<bigint, Buffer | undefined>();
  reqs.forEach((r, i) => client.request(r.type, BigInt(i + 1), r.offset, r.length, 0, r.payload));
  for (let n = 0; n < reqs.length; n++) {
    const rep = await client.readReply();
    assert.equal(rep.error, 0, `request ${rep.cookie} failed with ${rep.error}`);
    // The client's buffer may be a view of its socket chunk: copy what we keep.
    out.set(rep.cookie, rep.data ? Buffer.from(rep.data) : undefined);
  }
  return out;
}

test('1 MiB and odd-sized writes and reads, 48 in flight, read back exactly; the pool is reused', () =>
  withStack(async ({ client, model }) => {
    const before = bufferPool.stats;
    const next = rng(0x5eed);
    for (let round = 0; round < 6; round++) {
      // Writes: some 1 MiB aligned, some odd sizes at odd offsets, overlapping each other only
      // within a round's model updates in request order (the server applies them in order).
      const reqs = Array.from({ length: 48 }, () => {
        const length = next() < 0.5 ? MiB : between(next, 32 * KiB, 3 * MiB);
        const offset = between(next, 0, SIZE - length);
        return { type: CMD.write, offset, length, payload: fill(next, length) };
      });
      // Non-overlapping within the round, so completion order does not matter.
      const taken: Array<[number, number]> = [];
      const writes = reqs.filter((r) => {
        if (taken.some(([a, b]) => r.offset < b && a < r.offset + r.length)) return false;
        taken.push([r.offset, r.offset + r.length]);
        return true;
      });
      await pipeline(client, writes);
      for (const w of writes) w.payload!.copy(model, w.offset);
      // Reads of 48 ranges, lent frames on the way.
      const reads = Array.from({ length: 48 }, () => {
        const length = next() < 0.5 ? MiB : between(next, 32 * KiB, 3 * MiB);
        return { type: CMD.read, offset: between(next, 0, SIZE - length), length };
      });
      const got = await pipeline(client, reads);
      reads.forEach((r, i) => {
        const data = got.get(BigInt(i + 1));
        assert.ok(data && data.equals(model.subarray(r.offset, r.offset + r.length)), `round ${round}: read ${r.offset}+${r.length} differs from what was written`);
      });
    }
    const after = bufferPool.stats;
    assert.ok(after.reused - before.reused > 100, `pool reuse ${after.reused - before.reused}: payloads and frames did not come from the pool`);
  }));

test('reads and writes of the same ranges interleaved: each read sees the write before it', () =>
  withStack(async ({ client, model }) => {
    const next = rng(7);
    let cookie = 1n;
    for (let i = 0; i < 200; i++) {
      const length = between(next, 64 * KiB, 2 * MiB);
      const offset = between(next, 0, 8 * MiB);
      const payload = fill(next, length);
      // Write then read the same range back to back (NBD gives no order; wait for the write).
      client.request(CMD.write, cookie++, offset, length, 0, payload);
      assert.equal((await client.readReply()).error, 0);
      payload.copy(model, offset);
      const r = await client.call(CMD.read, offset - (offset % 4096), length);
      assert.equal(r.error, 0);
      assert.ok(r.data!.equals(model.subarray(offset - (offset % 4096), offset - (offset % 4096) + length)), `iteration ${i}`);
    }
  }));

test('a client that hangs up with lent reads queued: nothing breaks, the next client reads exact data', () =>
  withStack(async ({ path, client, model }) => {
    const next = rng(99);
    await writeFirst(client, model, next, 8);
    for (let round = 0; round < 5; round++) {
      const rude = await RawNbdClient.ready(path);
      for (let i = 0; i < 32; i++) rude.request(CMD.read, BigInt(i + 1), (i % 8) * MiB, MiB);
      // Take a little of the answer, then hang up with most of it still queued in the daemon.
      await rude.read(100);
      rude.close();
      // Meanwhile the first client overwrites and reads: its data must not be mixed with the
      // frames the dead connection was lent.
      const fresh = fill(next, MiB);
      const at = between(next, 0, 7) * MiB;
      assert.equal((await client.call(CMD.write, at, MiB, 0, fresh)).error, 0);
      fresh.copy(model, at);
      const got = await pipeline(client, Array.from({ length: 8 }, (_, i) => ({ type: CMD.read, offset: i * MiB, length: MiB })));
      for (let i = 0; i < 8; i++) assert.ok(got.get(BigInt(i + 1))!.equals(model.subarray(i * MiB, (i + 1) * MiB)), `round ${round}, MiB ${i}`);
    }
  }));

test('a slow reader: lent reads wait in the daemon while other requests cycle the pool, and arrive exact', () =>
  withStack(async ({ path, client, model }) => {
    const next = rng(1234);
    await writeFirst(client, model, next, 16);
    const slow = await RawNbdClient.ready(path);
    try {
      // 16 MiB of replies for a client that reads nothing yet: most of it stays queued on the
      // daemon's side of the socket, in frames the pool lent.
      // One at a time, so that each reply travels in a frame of its own (1 MiB, the size the
      // other client's frames have too).
      slow.socket.pause();
      for (let i = 0; i < 16; i++) {
        slow.request(CMD.read, BigInt(i + 1), i * MiB, MiB);
        await sleep(5);
      }
      // Meanwhile another client moves 64 MiB of other data through the pool, one request at
      // a time: any buffer given back too early is overwritten by these (other bytes).
      for (let i = 0; i < 64; i++) {
        const offset = (16 + (i % 32)) * MiB;
        const payload = fill(next, MiB);
        assert.equal((await client.call(CMD.write, offset, MiB, 0, payload)).error, 0);
        payload.copy(model, offset);
        const r = await client.call(CMD.read, offset, MiB);
        assert.ok(r.data!.equals(payload));
      }
      slow.socket.resume();
      for (let n = 0; n < 16; n++) {
        const rep = await slow.readReply();
        assert.equal(rep.error, 0);
        const i = Number(rep.cookie) - 1;
        assert.ok(rep.data!.equals(model.subarray(i * MiB, (i + 1) * MiB)), `slow reader: MiB ${i} differs (a lent buffer was reused while queued)`);
      }
    } finally {
      slow.close();
    }
  }));

test('server: a WRITE still running in a slow file backend keeps its payload while later frames reuse the pool', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsblk-lent-server-'));
  const file = join(dir, 'disk.img');
  // The first 8 writes wait 300 ms before their pwrite: by then later frames have cycled the pool.
  const backend = delayFilter(await FileBackend.open(file, { size: 32 * MiB }), 300, { ops: ['write'], count: 8 });
  const s = await startServer({ disk0: backend });
  const disk = await RemoteDisk.connect({ url: s.url('disk0'), connectTimeoutMs: 5000 });
  try {
    const next = rng(4242);
    const model = Buffer.alloc(32 * MiB);
    const pending: Array<Promise<{ status: number }>> = [];
    for (let i = 0; i < 32; i++) {
      const payload = fill(next, MiB);
      payload.copy(model, i * MiB);
      pending.push(io(disk, { op: Op.Write, offset: i * MiB, length: MiB, payload }));
      // One request per message: each frame is 1 MiB, the size the pool hands back out.
      await new Promise((r) => setImmediate(r));
    }
    for (const r of await Promise.all(pending)) assert.equal(r.status, 0);
    const got = readFileSync(file);
    for (let i = 0; i < 32; i++) {
      assert.ok(got.subarray(i * MiB, (i + 1) * MiB).equals(model.subarray(i * MiB, (i + 1) * MiB)), `MiB ${i} of the file differs (a payload was reused while its write waited)`);
    }
  } finally {
    await disk.close();
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
