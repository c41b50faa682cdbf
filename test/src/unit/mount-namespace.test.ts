import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mountsOfDevice } from '@wsblk/client';

const INFO = [
  '22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw',
  '40 22 253:0 / /tmp/mnt-r rw,relatime shared:20 - ext4 /dev/ublkb0 rw',
  '41 40 253:0 /sub /tmp/mnt-r/inner rw,relatime shared:21 - ext4 /dev/ublkb0 rw',
  '42 22 253:0 / /tmp/with\\040space rw - ext4 /dev/ublkb0 rw',
  '43 22 253:1 / /tmp/other rw - ext4 /dev/ublkb1 rw',
  '',
].join('\n');

test('mountsOfDevice finds every mount of one device, deepest first, with mountinfo escapes undone', () => {
  assert.deepEqual(mountsOfDevice(INFO, '253:0'), ['/tmp/mnt-r/inner', '/tmp/with space', '/tmp/mnt-r']);
  assert.deepEqual(mountsOfDevice(INFO, '253:1'), ['/tmp/other']);
  assert.deepEqual(mountsOfDevice(INFO, '7:0'), []);
});
