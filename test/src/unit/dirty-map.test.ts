import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirtyMap, regionShiftFor } from '@wsblk/client';

const GiB = 2 ** 30;

function scratch(t: import('node:test').TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'wsblk-dirty-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('region size is 64 KiB for small disks and grows so a map never passes 2^20 regions', () => {
  assert.equal(regionShiftFor(GiB), 16);
  assert.equal(regionShiftFor(64 * GiB), 16);
  assert.equal(regionShiftFor(64 * GiB + 1), 17);
  assert.ok(Math.ceil(16 * 2 ** 40 / 2 ** regionShiftFor(16 * 2 ** 40)) <= 2 ** 20);
});

test('the first write into a region waits for the map to be on disk; later writes into it wait for nothing', async (t) => {
  const path = join(scratch(t), 'r1.dirty');
  const m = await DirtyMap.create(path, GiB, 'set-a/ws://h:1/x');
  const p = m.mark(100_000, 4096);
  assert.ok(p instanceof Promise, 'a new region is saved');
  await p;
  assert.equal(m.mark(70_000, 4096), null, 'same region (64 KiB .. 128 KiB): nothing to save');
  const back = DirtyMap.load(path, GiB, 'set-a/ws://h:1/x');
  assert.ok(back);
  assert.equal(back.dirtyRegions, 1);
  assert.ok(back.isDirty(1));
  assert.equal(back.nextDirty(0), 1);
});

test('a write spanning regions marks each; marks made while a save runs are in a later save before their promise resolves', async (t) => {
  const path = join(scratch(t), 'r.dirty');
  const m = await DirtyMap.create(path, GiB, 'o');
  const saves = [m.mark(0, 3 * 65536), m.mark(10 * 65536, 1), m.mark(20 * 65536, 65537)];
  for (const s of saves) assert.ok(s);
  await saves[1];
  const mid = DirtyMap.load(path, GiB, 'o')!;
  for (const r of [0, 1, 2, 10]) assert.ok(mid.isDirty(r), `region ${r} on disk once its mark resolved`);
  await Promise.all(saves);
  const back = DirtyMap.load(path, GiB, 'o')!;
  assert.deepEqual([0, 1, 2, 10, 20, 21].map((r) => back.isDirty(r)), [true, true, true, true, true, true]);
  assert.equal(back.dirtyRegions, 6);
  assert.equal(back.isDirty(3), false);
});

test('copied regions and the resync position survive a flush; a new mark behind the cursor moves it back', async (t) => {
  const path = join(scratch(t), 'r.dirty');
  const m = await DirtyMap.create(path, GiB, 'o');
  await m.mark(0, 65536 * 8);
  m.copied(0, 1);
  m.copied(1, 2);
  m.copied(2, 3);
  await m.flush();
  let back = DirtyMap.load(path, GiB, 'o')!;
  assert.equal(back.resyncPosition, 3);
  assert.equal(back.dirtyRegions, 5);
  assert.equal(back.nextDirty(0), 3);
  await back.mark(65536, 10);
  assert.equal(back.resyncPosition, 1, 'region 1 was copied, then written again: resync must return to it');
  back = DirtyMap.load(path, GiB, 'o')!;
  assert.equal(back.resyncPosition, 1);
  assert.ok(back.isDirty(1));
});

test('a damaged map, or one for another owner or size, is not used (resync falls back to checksums)', async (t) => {
  const dir = scratch(t);
  const path = join(dir, 'r.dirty');
  const m = await DirtyMap.create(path, GiB, 'owner-1');
  await m.mark(0, 1);
  assert.ok(DirtyMap.load(path, GiB, 'owner-1'));
  assert.equal(DirtyMap.load(path, GiB, 'owner-2'), null);
  assert.equal(DirtyMap.load(path, 2 * GiB, 'owner-1'), null);
  assert.equal(DirtyMap.load(join(dir, 'missing'), GiB, 'owner-1'), null);
  const buf = readFileSync(path);
  buf[64] = buf[64]! ^ 0x80; // flip a bit of the bitmap
  writeFileSync(path, buf);
  assert.equal(DirtyMap.load(path, GiB, 'owner-1'), null, 'crc catches a flipped bit');
  writeFileSync(path, buf.subarray(0, 40));
  assert.equal(DirtyMap.load(path, GiB, 'owner-1'), null, 'a short file');
});

test('remove() deletes the map and later marks do not bring it back', async (t) => {
  const path = join(scratch(t), 'r.dirty');
  const m = await DirtyMap.create(path, GiB, 'o');
  const p = m.mark(0, 1);
  await m.remove();
  await p;
  assert.equal(existsSync(path), false);
  await m.mark(GiB - 1, 1);
  assert.equal(existsSync(path), false);
});
