// ublk ABI constants for the typed layers (values from include/uapi/linux/ublk_cmd.h, as in
// csrc/ublk_abi.h; a unit test checks both agree).

/** Feature flags: ADD_DEV flags, GET_FEATURES result, UblkDeviceInfo.flags. */
export const UBLK_F = {
  ZERO_COPY: 1 << 0,
  URING_CMD_COMP_IN_TASK: 1 << 1,
  NEED_GET_DATA: 1 << 2,
  USER_RECOVERY: 1 << 3,
  USER_RECOVERY_REISSUE: 1 << 4,
  UNPRIVILEGED_DEV: 1 << 5,
  CMD_IOCTL_ENCODE: 1 << 6,
  USER_COPY: 1 << 7,
  ZONED: 1 << 8,
  USER_RECOVERY_FAIL_IO: 1 << 9,
} as const;

/** Device states (dev_info.state). */
export const UBLK_S_DEV = { DEAD: 0, LIVE: 1, QUIESCED: 2, FAIL_IO: 3 } as const;

export const UBLK_PARAM_TYPE = { BASIC: 1, DISCARD: 2, DEVT: 4 } as const;

/** Basic-params attributes. VOLATILE_CACHE is what makes the kernel send FLUSH. */
export const UBLK_ATTR = { READ_ONLY: 1, ROTATIONAL: 2, VOLATILE_CACHE: 4, FUA: 8 } as const;

/** Request ops (low 8 bits of op_flags). */
export const UBLK_IO_OP = {
  READ: 0,
  WRITE: 1,
  FLUSH: 2,
  DISCARD: 3,
  WRITE_SAME: 4,
  WRITE_ZEROES: 5,
} as const;

/**
 * Request flags (op_flags above the op). FAILFAST_* mirror the bio's REQ_FAILFAST_*: the
 * submitter (md raid1 with --failfast, multipath) would rather have an error soon than a retry.
 */
export const UBLK_IO_F = {
  FAILFAST_DEV: 1 << 8,
  FAILFAST_TRANSPORT: 1 << 9,
  FAILFAST_DRIVER: 1 << 10,
  FUA: 1 << 13,
  NOUNMAP: 1 << 15,
} as const;

/** Any of the failfast flags. */
export const UBLK_IO_F_FAILFAST = UBLK_IO_F.FAILFAST_DEV | UBLK_IO_F.FAILFAST_TRANSPORT | UBLK_IO_F.FAILFAST_DRIVER;

export const UBLK_MAX_QUEUE_DEPTH = 4096;
export const UBLK_MAX_NR_QUEUES = 4096;
export const SECTOR_SHIFT = 9;

export type UblkDeviceState = 'dead' | 'live' | 'quiesced' | 'fail-io' | 'unknown';

/** The name of a dev_info.state value. */
export function deviceStateName(state: number): UblkDeviceState {
  switch (state) {
    case UBLK_S_DEV.DEAD:
      return 'dead';
    case UBLK_S_DEV.LIVE:
      return 'live';
    case UBLK_S_DEV.QUIESCED:
      return 'quiesced';
    case UBLK_S_DEV.FAIL_IO:
      return 'fail-io';
    default:
      return 'unknown';
  }
}
