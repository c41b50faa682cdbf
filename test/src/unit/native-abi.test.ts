// The ublk ABI as compiled into the addon matches the kernel's (include/uapi/linux/ublk_cmd.h).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  UBLK_ATTR, UBLK_F, UBLK_IO_F, UBLK_IO_F_FAILFAST, UBLK_IO_OP, UBLK_MAX_NR_QUEUES, UBLK_MAX_QUEUE_DEPTH,
  UBLK_PARAM_TYPE, UBLK_S_DEV, deviceStateName,
} from '@wsblk/native';
import { testHooks } from '@wsblk/native/test-hooks';

const layout = testHooks.abiLayout();

test('struct sizes match the kernel ABI', () => {
  assert.equal(layout.sizes.ctrlCmd, 32);
  assert.equal(layout.sizes.ctrlDevInfo, 64);
  assert.equal(layout.sizes.ioDesc, 24);
  assert.equal(layout.sizes.ioCmd, 16);
  assert.equal(layout.sizes.paramBasic, 32);
  assert.equal(layout.sizes.paramDiscard, 20);
  assert.equal(layout.sizes.ioUringSqe, 64);
});

test('ublksrv_ctrl_cmd field offsets', () => {
  assert.deepEqual(layout.offsets.ctrlCmd, { devId: 0, queueId: 4, len: 6, addr: 8, data: 16, devPathLen: 24 });
});

test('ublksrv_ctrl_dev_info field offsets', () => {
  assert.deepEqual(layout.offsets.ctrlDevInfo, {
    nrHwQueues: 0, queueDepth: 2, state: 4, maxIoBufBytes: 8, devId: 12, ublksrvPid: 16,
    flags: 24, ublksrvFlags: 32, ownerUid: 40, ownerGid: 44,
  });
});

test('ublksrv_io_desc and ublksrv_io_cmd field offsets', () => {
  assert.deepEqual(layout.offsets.ioDesc, { opFlags: 0, nrSectors: 4, startSector: 8, addr: 16 });
  assert.deepEqual(layout.offsets.ioCmd, { qId: 0, tag: 2, result: 4, addr: 8 });
});

test('ublk_params: basic at 8, discard at 40, with their field offsets', () => {
  assert.equal(layout.offsets.params!.len, 0);
  assert.equal(layout.offsets.params!.types, 4);
  assert.equal(layout.offsets.params!.basic, 8);
  assert.equal(layout.offsets.params!.discard, 40);
  assert.deepEqual(layout.offsets.paramBasic, {
    attrs: 0, logicalBsShift: 4, physicalBsShift: 5, ioOptShift: 6, ioMinShift: 7,
    maxSectors: 8, chunkSectors: 12, devSectors: 16, virtBoundaryMask: 24,
  });
  assert.deepEqual(layout.offsets.paramDiscard, {
    discardAlignment: 0, discardGranularity: 4, maxDiscardSectors: 8, maxWriteZeroesSectors: 12,
    maxDiscardSegments: 16,
  });
});

test('the uring command sits at byte 48 of the SQE, cmd_op at 8', () => {
  assert.equal(layout.offsets.ioUringSqe!.cmd, 48);
  assert.equal(layout.offsets.ioUringSqe!.cmdOp, 8);
  assert.equal(layout.opcodes.IORING_OP_URING_CMD, 46);
});

test('ioctl-encoded command opcodes', () => {
  assert.deepEqual(layout.opcodes, {
    GET_DEV_INFO: 0x80207502,
    ADD_DEV: 0xC0207504,
    DEL_DEV: 0xC0207505,
    START_DEV: 0xC0207506,
    STOP_DEV: 0xC0207507,
    SET_PARAMS: 0xC0207508,
    GET_PARAMS: 0x80207509,
    START_USER_RECOVERY: 0xC0207510,
    END_USER_RECOVERY: 0xC0207511,
    GET_DEV_INFO2: 0x80207512,
    GET_FEATURES: 0x80207513,
    FETCH_REQ: 0xC0107520,
    COMMIT_AND_FETCH_REQ: 0xC0107521,
    NEED_GET_DATA: 0xC0107522,
    IORING_OP_URING_CMD: 46,
  });
});

test('the iod area of queue q starts at q * round_up(4096 * 24, page)', () => {
  assert.equal(layout.iodArea.queue1Offset4k, 98304);
  assert.equal(layout.iodArea.depth128Length4k, 4096);
  assert.equal(layout.iodArea.depth200Length4k, 8192);
});

test('the TypeScript constants equal the compiled ones', () => {
  const n = testHooks.nativeConstants();
  for (const [k, v] of Object.entries(UBLK_F)) assert.equal(v, n[`F_${k}`], `UBLK_F.${k}`);
  for (const [k, v] of Object.entries(UBLK_S_DEV)) assert.equal(v, n[`S_DEV_${k}`], `UBLK_S_DEV.${k}`);
  for (const [k, v] of Object.entries(UBLK_PARAM_TYPE)) assert.equal(v, n[`PARAM_TYPE_${k}`], `UBLK_PARAM_TYPE.${k}`);
  for (const [k, v] of Object.entries(UBLK_ATTR)) assert.equal(v, n[`ATTR_${k}`], `UBLK_ATTR.${k}`);
  for (const [k, v] of Object.entries(UBLK_IO_OP)) assert.equal(v, n[`IO_OP_${k}`], `UBLK_IO_OP.${k}`);
  for (const [k, v] of Object.entries(UBLK_IO_F)) assert.equal(v, n[`IO_F_${k}`], `UBLK_IO_F.${k}`);
  assert.equal(n.MAX_QUEUE_DEPTH, UBLK_MAX_QUEUE_DEPTH);
  assert.equal(n.MAX_NR_QUEUES, UBLK_MAX_NR_QUEUES);
  assert.equal(n.IO_RES_ABORT, -19);
});

test('the constants carry the kernel values', () => {
  assert.equal(UBLK_F.USER_RECOVERY, 8);
  assert.equal(UBLK_F.USER_RECOVERY_REISSUE, 16);
  assert.equal(UBLK_F.CMD_IOCTL_ENCODE, 64);
  assert.equal(UBLK_F.USER_RECOVERY_FAIL_IO, 512);
  assert.deepEqual(UBLK_S_DEV, { DEAD: 0, LIVE: 1, QUIESCED: 2, FAIL_IO: 3 });
  assert.deepEqual(UBLK_ATTR, { READ_ONLY: 1, ROTATIONAL: 2, VOLATILE_CACHE: 4, FUA: 8 });
  assert.equal(UBLK_IO_F.FUA, 8192);
  // include/uapi/linux/ublk_cmd.h: FAILFAST_DEV/TRANSPORT/DRIVER are bits 8, 9, 10 (bit 16 is SWAP).
  assert.deepEqual([UBLK_IO_F.FAILFAST_DEV, UBLK_IO_F.FAILFAST_TRANSPORT, UBLK_IO_F.FAILFAST_DRIVER], [256, 512, 1024]);
  assert.equal(UBLK_IO_F_FAILFAST, 0x700);
  assert.equal(UBLK_IO_OP.WRITE_ZEROES, 5);
});

test('state names', () => {
  assert.equal(deviceStateName(2), 'quiesced');
  assert.equal(deviceStateName(9), 'unknown');
});
