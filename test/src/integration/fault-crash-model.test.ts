// The crash fault against a model, in process: random unaligned writes (some FUA), zeroes,
// discards, flushes and crashes on a filtered MemoryBackend. Reads always show every write
// made; after a crash they show exactly what was made durable (flushed, or FUA since its last
// flush) and nothing else; clearing the fault keeps what is in memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FaultTable, MemoryBackend, faultFilter } from '@wsblk/server';
import { TEST_CTX } from '../support/server.js';
import { rng } from '../support/random.js';

const SIZE = 64 << 10;

test('crash keeps exactly the durable writes, over 2000 random operations', async () => {
  const rnd = rng(14);
  const int = (n: number) => Math.floor(rnd() * n);
  const table = new FaultTable();
  const disk = faultFilter(new MemoryBackend(SIZE), table.addExport('disk0'));
  await table.set({ name: 'power', kind: 'crash', export: 'disk0' }, 'test');
  /** What reads must show, and what survives a crash. */
  const seen = Buffer.alloc(SIZE);
  const durable = Buffer.alloc(SIZE);
  let crashes = 0;
  let lostSome = 0;
  for (let i = 0; i < 2000; i++) {
    const offset = int(SIZE - 1);
    const length = 1 + int(Math.min(8192, SIZE - offset));
    const what = int(20);
    if (what < 10) {
      const data = Buffer.alloc(length, 1 + int(250));
      const fua = int(4) === 0;
      await disk.write(TEST_CTX, offset, data, fua);
      data.copy(seen, offset);
      if (fua) data.copy(durable, offset);
    } else if (what < 12) {
      const fua = int(4) === 0;
      await disk.writeZeroes(TEST_CTX, offset, length, false, fua);
      seen.fill(0, offset, offset + length);
      if (fua) durable.fill(0, offset, offset + length);
    } else if (what < 13) {
      await disk.discard(TEST_CTX, offset, length);
      seen.fill(0, offset, offset + length);
    } else if (what < 16) {
      await disk.flush(TEST_CTX);
      seen.copy(durable);
    } else if (what < 17) {
      const report = table.crash('power', 'test');
      crashes++;
      if (!seen.equals(durable)) {
        lostSome++;
        assert.ok(report.writes > 0 && report.bytes > 0, 'a crash that loses data says so');
      }
      durable.copy(seen);
    } else {
      const r = await disk.read(TEST_CTX, offset, length);
      assert.ok(r.equals(seen.subarray(offset, offset + length)), `read ${offset}+${length} at step ${i}`);
    }
  }
  assert.ok((await disk.read(TEST_CTX, 0, SIZE)).equals(seen));
  assert.ok(crashes > 50 && lostSome > 20, `${crashes} crashes, ${lostSome} lost data`);
  // Cleared: what was written stays, and a new crash fault finds nothing to lose.
  table.clear('power', 'test');
  await disk.flush(TEST_CTX);
  await table.set({ name: 'power', kind: 'crash', export: 'disk0' }, 'test');
  assert.deepEqual(table.crash('power', 'test'), { writes: 0, bytes: 0 });
  assert.ok((await disk.read(TEST_CTX, 0, SIZE)).equals(seen));
});
