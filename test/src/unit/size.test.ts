import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatSize, parseSize } from '@wsblk/shared';

test('parseSize reads K, M, G and T as powers of 1024, in either case', () => {
  assert.equal(parseSize('0'), 0);
  assert.equal(parseSize('512'), 512);
  assert.equal(parseSize('4K'), 4096);
  assert.equal(parseSize('4k'), 4096);
  assert.equal(parseSize('64M'), 64 * 2 ** 20);
  assert.equal(parseSize('1G'), 2 ** 30);
  assert.equal(parseSize('2T'), 2 * 2 ** 40);
});

test('parseSize accepts a B or iB suffix, surrounding spaces and a fraction that gives whole bytes', () => {
  assert.equal(parseSize('10KiB'), 10240);
  assert.equal(parseSize('10KB'), 10240);
  assert.equal(parseSize('100B'), 100);
  assert.equal(parseSize(' 1 G '), 2 ** 30);
  assert.equal(parseSize('1.5K'), 1536);
  assert.equal(parseSize('0.5G'), 2 ** 29);
});

test('parseSize refuses text that is not a size, with the text in the message', () => {
  for (const bad of ['', 'abc', '-1', '1X', '1KK', '1e3', '0x10', 'G', '1.5.2M']) {
    assert.throws(() => parseSize(bad), (e: Error) => e.message.includes(`invalid size '${bad}'`), bad);
  }
});

test('parseSize refuses fractions of a byte and sizes past 2^53', () => {
  assert.throws(() => parseSize('0.3'), /not a whole number of bytes/);
  assert.throws(() => parseSize('1.0001K'), /not a whole number of bytes/);
  assert.throws(() => parseSize('9000000T'), /not a whole number of bytes/);
});

test('formatSize uses the largest unit that divides the size exactly', () => {
  assert.equal(formatSize(0), '0');
  assert.equal(formatSize(1), '1');
  assert.equal(formatSize(1536), '1536');
  assert.equal(formatSize(4096), '4K');
  assert.equal(formatSize(3 * 2 ** 20), '3M');
  assert.equal(formatSize(1536 * 2 ** 20), '1536M');
  assert.equal(formatSize(2 ** 30), '1G');
  assert.equal(formatSize(5 * 2 ** 40), '5T');
});

test('formatSize output parses back to the same number of bytes', () => {
  for (const n of [0, 1, 512, 1536, 4096, 3 << 20, 2 ** 30 + 4096, 7 * 2 ** 40]) assert.equal(parseSize(formatSize(n)), n);
});
