// The addon's raw io_uring wrapper works against a regular file, batches NOPs through the
// eventfd + uv_poll path, and keeps its ring fds close-on-exec.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { testHooks } from '@wsblk/native/test-hooks';

test('a file written with IORING_OP_WRITE reads back equal with IORING_OP_READ', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsblk-uring-'));
  try {
    const path = join(dir, 'data');
    const r = testHooks.uringFileRoundTrip(path, 65536 + 123);
    assert.equal(r.written, 65536 + 123);
    assert.equal(r.read, 65536 + 123);
    assert.equal(r.equal, true);
    const bytes = readFileSync(path);
    assert.equal(bytes.length, 65536 + 123);
    assert.equal(bytes[1], (1 * 131 + 7) & 0xff);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('io_uring fds are close-on-exec', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsblk-uring-'));
  try {
    assert.equal(testHooks.uringFileRoundTrip(join(dir, 'f'), 512).ringCloexec, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an SQE128 ring (the control rings\' shape) runs a NOP', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsblk-uring-'));
  try {
    assert.equal(testHooks.uringFileRoundTrip(join(dir, 'f'), 512).sqe128Nop, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a batch of NOPs submitted with one enter is reaped from the event loop in one callback', async () => {
  const r = await testHooks.uringNopBatch(128);
  assert.equal(r.submitted, 128);
  assert.equal(r.cqes, 128);
  assert.equal(r.batches, 1);
  assert.equal(r.ringCloexec, true);
});

test('many NOP batches in parallel all complete', async () => {
  const rs = await Promise.all(Array.from({ length: 16 }, (_, i) => testHooks.uringNopBatch(i + 1)));
  rs.forEach((r, i) => assert.equal(r.cqes, i + 1));
});

test('a NOP batch bigger than allowed is refused', () => {
  assert.throws(() => testHooks.uringNopBatch(0), RangeError);
  assert.throws(() => testHooks.uringNopBatch(5000), RangeError);
});
