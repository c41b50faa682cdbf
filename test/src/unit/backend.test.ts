import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { FileBackend, MemoryBackend, delayFilter, type Backend } from '@wsblk/server';
import { RecordingBackend, TEST_CTX, pattern, tempDir } from '../support/server.js';

const MiB = 1 << 20;

/** Runs fn with a fresh temp dir, removed afterwards. */
async function inTemp(fn: (path: (name: string) => string) => Promise<void>): Promise<void> {
  const t = tempDir('wsblk-backend-');
  try {
    await fn(t.path);
  } finally {
    t.cleanup();
  }
}

/** 512-byte blocks the file holds on disk. */
const blocks = (path: string) => statSync(path).blocks;

describe('FileBackend', () => {
  test('a new export creates a sparse file of the given size', () => inTemp(async (p) => {
    const b = await FileBackend.open(p('disk.img'), { size: 64 * MiB });
    try {
      const st = statSync(p('disk.img'));
      assert.equal(st.size, 64 * MiB);
      assert.ok(st.blocks <= 8, `a sparse file holds (almost) no blocks, has ${st.blocks}`);
      assert.deepEqual(b.info, { size: 64 * MiB, blockSize: 512, readOnly: false, flush: true, fua: true, discard: true, writeZeroes: true });
      assert.equal(b.description, `file:${p('disk.img')}`);
    } finally {
      await b.close();
    }
  }));

  test('an existing file is used at its own size; a size= that differs is refused', () => inTemp(async (p) => {
    writeFileSync(p('old.img'), Buffer.alloc(8192, 1));
    const b = await FileBackend.open(p('old.img'));
    assert.equal(b.info.size, 8192);
    await b.close();
    const same = await FileBackend.open(p('old.img'), { size: 8192 });
    await same.close();
    await assert.rejects(FileBackend.open(p('old.img'), { size: 16384 }),
      { message: `${p('old.img')} is 8192 bytes but the export says size=16384; drop size= to use the file as it is` });
    assert.equal(statSync(p('old.img')).size, 8192, 'the file is left as it was');
  }));

  test('a missing file without a size, a missing read-only file, an empty file, a ragged size and a directory are refused', () => inTemp(async (p) => {
    await assert.rejects(FileBackend.open(p('none.img')), /does not exist and no size was given \(add ,size=SIZE\)/);
    await assert.rejects(FileBackend.open(p('none.img'), { size: MiB, readOnly: true }), /does not exist and the export is read-only/);
    writeFileSync(p('empty.img'), '');
    await assert.rejects(FileBackend.open(p('empty.img')), /is empty: an export needs a size/);
    writeFileSync(p('ragged.img'), Buffer.alloc(1000));
    await assert.rejects(FileBackend.open(p('ragged.img')), /size 1000 is not a multiple of the block size 512/);
    writeFileSync(p('small4k.img'), Buffer.alloc(2048));
    await assert.rejects(FileBackend.open(p('small4k.img'), { blockSize: 4096 }), /not a multiple of the block size 4096/);
    mkdirSync(p('dir'));
    await assert.rejects(FileBackend.open(p('dir')), /is not a regular file/);
  }));

  test('writes read back, unwritten ranges read as zeroes, and reads may span written and unwritten ranges', () => inTemp(async (p) => {
    const b = await FileBackend.open(p('d.img'), { size: 8 * MiB });
    try {
      const a = pattern(128 << 10, 1);
      await b.write(TEST_CTX, MiB, a, false);
      const c = pattern(4096, 2);
      await b.write(TEST_CTX, 3 * MiB, c, true);
      assert.ok((await b.read(TEST_CTX, MiB, a.length)).equals(a));
      assert.ok((await b.read(TEST_CTX, 3 * MiB, 4096)).equals(c), 'a FUA write reads back');
      assert.ok((await b.read(TEST_CTX, 0, 64 << 10)).equals(Buffer.alloc(64 << 10)));
      const span = await b.read(TEST_CTX, MiB - 4096, 8192);
      assert.ok(span.subarray(0, 4096).equals(Buffer.alloc(4096)));
      assert.ok(span.subarray(4096).equals(a.subarray(0, 4096)));
      await b.flush(TEST_CTX);
      assert.ok(readFileSync(p('d.img')).subarray(MiB, MiB + a.length).equals(a), 'the data is in the file');
    } finally {
      await b.close();
    }
  }));

  test('discard makes a range read back as zeroes and punches a hole', () => inTemp(async (p) => {
    const b = await FileBackend.open(p('d.img'), { size: 8 * MiB });
    try {
      await b.write(TEST_CTX, 0, pattern(4 * MiB, 3), false);
      await b.flush(TEST_CTX);
      const before = blocks(p('d.img'));
      assert.ok(before >= (4 * MiB) / 512, `written blocks are allocated (${before})`);
      await b.discard(TEST_CTX, MiB, 2 * MiB);
      assert.ok((await b.read(TEST_CTX, MiB, 2 * MiB)).equals(Buffer.alloc(2 * MiB)));
      assert.ok((await b.read(TEST_CTX, 0, MiB)).equals(pattern(4 * MiB, 3).subarray(0, MiB)), 'data before the range is kept');
      assert.ok((await b.read(TEST_CTX, 3 * MiB, MiB)).equals(pattern(4 * MiB, 3).subarray(3 * MiB)), 'data after the range is kept');
      const after = blocks(p('d.img'));
      assert.ok(after <= before - (2 * MiB) / 512, `the hole gave back 2 MiB: ${before} -> ${after} blocks`);
      assert.equal(statSync(p('d.img')).size, 8 * MiB, 'the file keeps its size');
    } finally {
      await b.close();
    }
  }));

  test('writeZeroes zeroes a range: with unmap it punches a hole, with noUnmap it keeps the blocks', () => inTemp(async (p) => {
    const b = await FileBackend.open(p('d.img'), { size: 8 * MiB });
    try {
      await b.write(TEST_CTX, 0, pattern(4 * MiB, 4), false);
      await b.flush(TEST_CTX);
      const full = blocks(p('d.img'));
      await b.writeZeroes(TEST_CTX, 0, MiB, true, false);
      assert.ok((await b.read(TEST_CTX, 0, MiB)).equals(Buffer.alloc(MiB)));
      assert.ok(blocks(p('d.img')) >= full, 'noUnmap keeps the range allocated');
      await b.writeZeroes(TEST_CTX, 2 * MiB, MiB, false, true);
      assert.ok((await b.read(TEST_CTX, 2 * MiB, MiB)).equals(Buffer.alloc(MiB)));
      assert.ok(blocks(p('d.img')) <= full - MiB / 512, 'unmap punches a hole');
      assert.ok((await b.read(TEST_CTX, MiB, MiB)).equals(pattern(4 * MiB, 4).subarray(MiB, 2 * MiB)), 'data between is kept');
      await b.writeZeroes(TEST_CTX, 7 * MiB + 512, 512, false, false);
      assert.ok((await b.read(TEST_CTX, 7 * MiB, 4096)).equals(Buffer.alloc(4096)));
    } finally {
      await b.close();
    }
  }));

  test('a read-only export advertises no write features and refuses writes at the file', () => inTemp(async (p) => {
    writeFileSync(p('ro.img'), pattern(64 << 10, 5));
    const b = await FileBackend.open(p('ro.img'), { readOnly: true });
    try {
      assert.deepEqual(b.info, { size: 64 << 10, blockSize: 512, readOnly: true, flush: false, fua: false, discard: false, writeZeroes: false });
      assert.ok((await b.read(TEST_CTX, 4096, 4096)).equals(pattern(64 << 10, 5).subarray(4096, 8192)));
      await assert.rejects(b.write(TEST_CTX, 0, Buffer.alloc(512, 1), false));
      assert.ok(readFileSync(p('ro.img')).equals(pattern(64 << 10, 5)), 'the file is unchanged');
    } finally {
      await b.close();
    }
  }));

  test('a file reopened after close holds what was written', () => inTemp(async (p) => {
    const b = await FileBackend.open(p('d.img'), { size: MiB, blockSize: 4096 });
    await b.write(TEST_CTX, 8192, pattern(4096, 6), true);
    await b.close();
    const again = await FileBackend.open(p('d.img'), { blockSize: 4096 });
    try {
      assert.equal(again.info.blockSize, 4096);
      assert.ok((await again.read(TEST_CTX, 8192, 4096)).equals(pattern(4096, 6)));
    } finally {
      await again.close();
    }
  }));
});

describe('MemoryBackend', () => {
  test('writes read back across 1 MiB chunk boundaries and unwritten ranges read as zeroes', async () => {
    const m = new MemoryBackend(8 * MiB);
    const b: Backend = m;
    const a = pattern(2 * MiB + 1000, 7);
    await b.write(TEST_CTX, MiB - 500, a, false);
    assert.ok((await b.read(TEST_CTX, MiB - 500, a.length)).equals(a));
    assert.ok((await b.read(TEST_CTX, 0, MiB - 500)).equals(Buffer.alloc(MiB - 500)));
    const tail = await b.read(TEST_CTX, 3 * MiB + 500, 1000);
    assert.ok(tail.equals(Buffer.alloc(1000)));
    assert.ok((await b.read(TEST_CTX, MiB - 600, 200)).equals(Buffer.concat([Buffer.alloc(100), a.subarray(0, 100)])));
    assert.equal(m.allocatedBytes, 4 * MiB, 'only touched chunks are allocated');
  });

  test('discard and writeZeroes zero a range and free whole chunks', async () => {
    const m = new MemoryBackend(8 * MiB);
    const b: Backend = m;
    await b.write(TEST_CTX, 0, pattern(4 * MiB, 8), false);
    assert.equal(m.allocatedBytes, 4 * MiB);
    await b.discard(TEST_CTX, MiB - 100, MiB + 200);
    assert.ok((await b.read(TEST_CTX, MiB - 100, MiB + 200)).equals(Buffer.alloc(MiB + 200)));
    assert.ok((await b.read(TEST_CTX, MiB - 101, 1)).equals(pattern(4 * MiB, 8).subarray(MiB - 101, MiB - 100)));
    assert.equal(m.allocatedBytes, 3 * MiB, 'the whole chunk inside the range is freed');
    await b.writeZeroes(TEST_CTX, 2 * MiB, 2 * MiB, false, false);
    assert.equal(m.allocatedBytes, MiB);
    assert.ok((await b.read(TEST_CTX, 2 * MiB, 2 * MiB)).equals(Buffer.alloc(2 * MiB)));
  });

  test('the info says what the constructor was given', () => {
    const b = new MemoryBackend(MiB, { readOnly: true, blockSize: 4096 });
    assert.deepEqual(b.info, { size: MiB, blockSize: 4096, readOnly: true, flush: true, fua: true, discard: true, writeZeroes: true });
  });
});

describe('delayFilter', () => {
  test('only matching requests are held, and only the first count of them', async () => {
    const inner = new RecordingBackend(new MemoryBackend(MiB));
    const b = delayFilter(inner, 300, { ops: ['write'], offset: 4096, count: 1 });
    const order: string[] = [];
    const held = b.write(TEST_CTX, 4096, Buffer.alloc(512, 1), false).then(() => order.push('held write'));
    const other = b.write(TEST_CTX, 8192, Buffer.alloc(512, 2), false).then(() => order.push('other offset'));
    const read = b.read(TEST_CTX, 4096, 512).then(() => order.push('read'));
    await Promise.all([other, read]);
    const second = b.write(TEST_CTX, 4096, Buffer.alloc(512, 3), false).then(() => order.push('second write'));
    await Promise.all([held, second]);
    assert.deepEqual(order, ['other offset', 'read', 'second write', 'held write']);
    assert.deepEqual(inner.calls.map((c) => `${c.op}@${c.offset}`), ['write@8192', 'read@4096', 'write@4096', 'write@4096']);
    assert.ok((await b.read(TEST_CTX, 4096, 512)).equals(Buffer.alloc(512, 1)), 'the held write landed last');
    assert.equal(b.info, inner.info);
    assert.ok(inner.calls.every((c) => c.ctx === TEST_CTX), 'the request context is passed down as it is');
    assert.match(b.description, /^delay\(300ms\):recording:memory:/);
  });
});
