import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isAllZero } from '@wsblk/shared';

test('isAllZero is true for empty and all-zero buffers of any length', () => {
  for (const n of [0, 1, 511, 4096, (1 << 16) - 1, 1 << 16, (1 << 16) + 1, 3 << 20]) assert.equal(isAllZero(Buffer.alloc(n)), true, `${n} bytes`);
});

test('isAllZero is false when any single byte is set, wherever it is', () => {
  const n = (2 << 16) + 100;
  for (const at of [0, 1, 4095, (1 << 16) - 1, 1 << 16, (1 << 16) + 1, 2 << 16, n - 1]) {
    const b = Buffer.alloc(n);
    b[at] = 0x80;
    assert.equal(isAllZero(b), false, `byte ${at} set`);
  }
});

test('isAllZero looks only at the bytes of a subarray', () => {
  const b = Buffer.alloc(8192, 1);
  b.fill(0, 1000, 5000);
  assert.equal(isAllZero(b.subarray(1000, 5000)), true);
  assert.equal(isAllZero(b.subarray(999, 5000)), false);
  assert.equal(isAllZero(b.subarray(1000, 5001)), false);
});
