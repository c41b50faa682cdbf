import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isAllZero } from '@wsblk/shared';
import { DISK_BYTES, exportForTest, haveTools, nbdcopyInAndOut } from './nbd-harness.js';

const MiB = 1 << 20;

test('nbdcopy copies a 64 MiB random file in and back out byte for byte', { timeout: 300_000 }, async (t) => {
  if (!haveTools(t, 'nbdcopy')) return;
  const { uri, dir } = await exportForTest(t);
  const { data, copied } = await nbdcopyInAndOut(uri, dir, 64 * MiB);
  // The export is larger than the file: what follows the copied bytes must still read as zeroes.
  assert.equal(copied.length, DISK_BYTES);
  assert.ok(copied.subarray(0, data.length).equals(data), 'copy differs from the source');
  assert.ok(isAllZero(copied.subarray(data.length)), 'bytes after the copy are not zero');
});
