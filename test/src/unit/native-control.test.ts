// Without ublk_drv the addon loads, and every use says why in one line with an errno code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';

import {
  addDevice, openQueues, getDeviceInfo, getFeatures, isUblkSystemError, setParams, ublkAvailable,
  blockDevicePath,
} from '@wsblk/native';

const noUblk = { skip: existsSync('/dev/ublk-control') ? 'this host has /dev/ublk-control' : false };
const NOT_LOADED = 'ublk_drv is not loaded (modprobe ublk_drv): /dev/ublk-control does not exist';

test('ublkAvailable says ublk_drv is not loaded', noUblk, () => {
  assert.deepEqual(ublkAvailable(), { ok: false, reason: NOT_LOADED, code: 'ENOENT' });
});

test('a control command rejects with ENOENT and the not-loaded message', noUblk, async () => {
  await assert.rejects(getFeatures(), (e: unknown) => {
    assert.ok(isUblkSystemError(e, 'ENOENT'));
    assert.equal(e.message, NOT_LOADED);
    assert.equal(e.errno, -2);
    assert.equal(e.syscall, 'open');
    return true;
  });
  await assert.rejects(getDeviceInfo(0), (e: unknown) => isUblkSystemError(e, 'ENOENT'));
});

test('opening a queue of a missing device says /dev/ublkcN does not exist', noUblk, async () => {
  await assert.rejects(
    openQueues({ device: { id: 7, nrQueues: 1, queueDepth: 4, maxIoBytes: 4096 }, openTimeoutMs: 0,
      handlers: () => ({ onRequests() {} }) }),
    (e: unknown) => {
      assert.ok(isUblkSystemError(e, 'ENOENT'));
      assert.match(e.message, /^\/dev\/ublkc7 does not exist/);
      return true;
    });
});

test('bad geometry is refused before the kernel is asked', async () => {
  await assert.rejects(addDevice({ queues: 1, depth: 0, maxIoBytes: 65536, features: -1 }), RangeError);
  await assert.rejects(addDevice({ queues: 1, depth: 8, maxIoBytes: 1000, features: -1 }), RangeError);
  await assert.rejects(setParams(0, { sizeBytes: 1000, maxSectors: 8 }), RangeError);
  await assert.rejects(setParams(0, { sizeBytes: 4096, logicalBlockSize: 4096, physicalBlockSize: 512, maxSectors: 8 }), RangeError);
  await assert.rejects(openQueues({ device: { id: 0, nrQueues: 1, queueDepth: 5000, maxIoBytes: 4096 },
    handlers: () => ({ onRequests() {} }) }), RangeError);
});

test('device paths', () => {
  assert.equal(blockDevicePath(3), '/dev/ublkb3');
});
