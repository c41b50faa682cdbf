// Typed control commands on /dev/ublk-control. Each runs on the libuv thread pool with a
// timeout, so a blocking command (START_DEV, END_USER_RECOVERY, DEL_DEV) never blocks the event
// loop, which must keep serving the queues those commands wait for.
import { setTimeout as sleep } from 'node:timers/promises';

import {
  SECTOR_SHIFT, UBLK_ATTR, UBLK_F, UBLK_MAX_NR_QUEUES, UBLK_MAX_QUEUE_DEPTH, UBLK_PARAM_TYPE,
  deviceStateName, type UblkDeviceState,
} from './abi.js';
import { binding, type ControlCommandName, type RawDevInfo, type RawParams } from './binding.js';
import { isUblkSystemError, systemError } from './errors.js';

/** Options every control command takes. */
export interface ControlOptions {
  /** Give up (and cancel the command) after this long. */
  timeoutMs?: number;
}

const QUICK_TIMEOUT_MS = 10_000;
const BLOCKING_TIMEOUT_MS = 30_000;

/** A ublk device as GET_DEV_INFO / ADD_DEV describe it. */
export interface UblkDeviceInfo {
  id: number;
  nrQueues: number;
  queueDepth: number;
  /** Largest request in bytes (the kernel rounds the asked value down to a page). */
  maxIoBytes: number;
  state: UblkDeviceState;
  /** The daemon pid given to START_DEV / END_USER_RECOVERY, -1 when none. */
  daemonPid: number;
  /** UBLK_F bits the kernel granted. */
  flags: number;
  ownerUid: number;
  ownerGid: number;
  /** The kernel quiesces the device when its daemon dies, for a new one to take over. */
  userRecovery: boolean;
  /** Requests the dead daemon held are re-sent to the new one. */
  reissue: boolean;
}

function command(name: ControlCommandName): number {
  return binding.CTRL_CMD[name];
}

async function control(name: ControlCommandName, id: number, arg: object | null,
  timeoutMs: number): Promise<unknown> {
  return binding.control(command(name), id, arg, timeoutMs);
}

function toInfo(raw: RawDevInfo): UblkDeviceInfo {
  return {
    id: raw.devId,
    nrQueues: raw.nrHwQueues,
    queueDepth: raw.queueDepth,
    maxIoBytes: raw.maxIoBufBytes,
    state: deviceStateName(raw.state),
    daemonPid: raw.ublksrvPid,
    flags: raw.flags,
    ownerUid: raw.ownerUid,
    ownerGid: raw.ownerGid,
    userRecovery: (raw.flags & UBLK_F.USER_RECOVERY) !== 0,
    reissue: (raw.flags & UBLK_F.USER_RECOVERY_REISSUE) !== 0,
  };
}

function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= 1 << 20) {
    throw new RangeError(`bad ublk device id ${id}`);
  }
}

/** /dev/ublkbN, the block device. */
export function blockDevicePath(id: number): string {
  return `/dev/ublkb${id}`;
}

/** The running kernel's release string (uname -r), for error messages. */
function kernelRelease(): string {
  return binding.kernelRelease();
}

/** GET_FEATURES: the UBLK_F bits this kernel supports (Linux >= 6.5). */
export async function getFeatures(opts: ControlOptions = {}): Promise<number> {
  return (await control('GET_FEATURES', -1, null, opts.timeoutMs ?? QUICK_TIMEOUT_MS)) as number;
}

/** What the kernel does with requests when the daemon dies. */
export type RecoveryMode =
  /** Fail requests, the device is stopped (no UBLK_F_USER_RECOVERY). */
  | 'none'
  /** Quiesce and queue new requests; requests the daemon held fail. */
  | 'requeue'
  /** Quiesce, and re-send the requests the daemon held to the next daemon (default). */
  | 'reissue';

export interface AddDeviceOptions extends ControlOptions {
  /** Device id, or -1 / undefined for the first free one. */
  id?: number;
  /** Hardware queues (the kernel caps it at the number of CPUs). */
  queues: number;
  /** Tags per queue, 1..4096. */
  depth: number;
  /** Largest request in bytes; also each tag's buffer size. */
  maxIoBytes: number;
  recovery?: RecoveryMode;
  /** More UBLK_F bits to ask for. The native queue serves copy mode only. */
  extraFlags?: number;
  /** GET_FEATURES result, if already known (saves a command). */
  features?: number;
}

/**
 * ADD_DEV: creates /dev/ublkcN (not yet /dev/ublkbN). Returns the negotiated device info: use
 * its nrQueues, queueDepth and maxIoBytes, which may be smaller than asked.
 */
export async function addDevice(opts: AddDeviceOptions): Promise<UblkDeviceInfo> {
  const id = opts.id ?? -1;
  if (id !== -1) checkId(id);
  if (!Number.isInteger(opts.queues) || opts.queues < 1 || opts.queues > UBLK_MAX_NR_QUEUES) {
    throw new RangeError(`queues must be 1..${UBLK_MAX_NR_QUEUES}, got ${opts.queues}`);
  }
  if (!Number.isInteger(opts.depth) || opts.depth < 1 || opts.depth > UBLK_MAX_QUEUE_DEPTH) {
    throw new RangeError(`depth must be 1..${UBLK_MAX_QUEUE_DEPTH}, got ${opts.depth}`);
  }
  if (!Number.isInteger(opts.maxIoBytes) || opts.maxIoBytes < 4096 || opts.maxIoBytes % 4096 !== 0 ||
      opts.maxIoBytes > 1 << 30) {
    throw new RangeError(`maxIoBytes must be a multiple of 4096 up to 1 GiB, got ${opts.maxIoBytes}`);
  }
  const features = opts.features ?? await getFeatures(opts);
  const recovery = opts.recovery ?? 'reissue';
  let flags = UBLK_F.CMD_IOCTL_ENCODE | (opts.extraFlags ?? 0);
  if (recovery !== 'none') flags |= UBLK_F.USER_RECOVERY;
  if (recovery === 'reissue') flags |= UBLK_F.USER_RECOVERY_REISSUE;
  const missing = flags & ~features;
  if (missing !== 0) {
    throw systemError('EOPNOTSUPP', 95,
      `kernel too old (Linux ${kernelRelease()}): ublk_drv lacks ${
        Object.entries(UBLK_F).filter(([, b]) => (missing & b) !== 0).map(([n]) => n).join(', ')}`,
      'ADD_DEV');
  }
  const raw = await control('ADD_DEV', id, {
    nrHwQueues: opts.queues,
    queueDepth: opts.depth,
    maxIoBufBytes: opts.maxIoBytes,
    flags,
  }, opts.timeoutMs ?? QUICK_TIMEOUT_MS) as RawDevInfo;
  return toInfo(raw);
}

/** GET_DEV_INFO. */
export async function getDeviceInfo(id: number, opts: ControlOptions = {}): Promise<UblkDeviceInfo> {
  checkId(id);
  return toInfo(await control('GET_DEV_INFO', id, null, opts.timeoutMs ?? QUICK_TIMEOUT_MS) as RawDevInfo);
}

/** Discard and write-zeroes limits; both need the DISCARD params type in ublk. */
export interface UblkDiscardParams {
  /** Discard granularity in bytes (required by the kernel, e.g. 4096). */
  granularityBytes: number;
  alignmentBytes?: number;
  /** Largest DISCARD in sectors; 0 = no discard. */
  maxDiscardSectors: number;
  /** Largest WRITE_ZEROES in sectors; 0 = none. */
  maxWriteZeroesSectors?: number;
}

/** Device parameters for SET_PARAMS, in bytes; converted to the kernel's shifts and sectors. */
export interface UblkParams {
  sizeBytes: number;
  /** 512 (default) or 4096. */
  logicalBlockSize?: 512 | 4096;
  /** Power of two >= logical; default max(logical, 4096). */
  physicalBlockSize?: number;
  /** Power of two; default the logical block size. */
  ioMinBytes?: number;
  /** Power of two; default the physical block size. */
  ioOptBytes?: number;
  /** Largest request in sectors; default maxIoBytes / 512 of the device. */
  maxSectors?: number;
  discard?: UblkDiscardParams;
  /** Write-back cache: the kernel sends FLUSH. */
  volatileCache?: boolean;
  /** Forward FUA writes (only with volatileCache). */
  fua?: boolean;
  readOnly?: boolean;
  rotational?: boolean;
}

function log2Exact(v: number, what: string): number {
  const s = Math.log2(v);
  if (!Number.isInteger(s) || s < 9 || s > 30) throw new RangeError(`${what} must be a power of two >= 512, got ${v}`);
  return s;
}

/** SET_PARAMS: only before START_DEV (never during recovery). */
export async function setParams(id: number, p: UblkParams, opts: ControlOptions = {}): Promise<void> {
  checkId(id);
  const logical = p.logicalBlockSize ?? 512;
  if (logical !== 512 && logical !== 4096) throw new RangeError(`logicalBlockSize must be 512 or 4096`);
  const physical = p.physicalBlockSize ?? Math.max(logical, 4096);
  const ioMin = p.ioMinBytes ?? logical;
  const ioOpt = p.ioOptBytes ?? physical;
  if (physical < logical) throw new RangeError('physicalBlockSize must be >= logicalBlockSize');
  if (!Number.isSafeInteger(p.sizeBytes) || p.sizeBytes <= 0 || p.sizeBytes % logical !== 0) {
    throw new RangeError(`sizeBytes must be a positive multiple of ${logical}, got ${p.sizeBytes}`);
  }
  const maxSectors = p.maxSectors ??
    (await getDeviceInfo(id, opts)).maxIoBytes >> SECTOR_SHIFT;
  let attrs = 0;
  if (p.readOnly) attrs |= UBLK_ATTR.READ_ONLY;
  if (p.rotational) attrs |= UBLK_ATTR.ROTATIONAL;
  if (p.volatileCache) attrs |= UBLK_ATTR.VOLATILE_CACHE;
  if (p.fua) attrs |= UBLK_ATTR.FUA;
  const raw: Partial<RawParams> = {
    types: UBLK_PARAM_TYPE.BASIC,
    attrs,
    logicalBsShift: log2Exact(logical, 'logicalBlockSize'),
    physicalBsShift: log2Exact(physical, 'physicalBlockSize'),
    ioMinShift: log2Exact(ioMin, 'ioMinBytes'),
    ioOptShift: log2Exact(ioOpt, 'ioOptBytes'),
    maxSectors,
    devSectors: p.sizeBytes / 512,
  };
  if (p.discard) {
    if (!(p.discard.granularityBytes > 0)) throw new RangeError('discard.granularityBytes must be > 0');
    raw.types! |= UBLK_PARAM_TYPE.DISCARD;
    raw.discardGranularity = p.discard.granularityBytes;
    raw.discardAlignment = p.discard.alignmentBytes ?? 0;
    raw.maxDiscardSectors = p.discard.maxDiscardSectors;
    raw.maxWriteZeroesSectors = p.discard.maxWriteZeroesSectors ?? 0;
    raw.maxDiscardSegments = 1;
  }
  await control('SET_PARAMS', id, raw, opts.timeoutMs ?? QUICK_TIMEOUT_MS);
}

/** Parameters as the kernel holds them (GET_PARAMS), with the device numbers. */
export interface UblkParamsInfo {
  sizeBytes: number;
  logicalBlockSize: number;
  physicalBlockSize: number;
  ioMinBytes: number;
  ioOptBytes: number;
  maxSectors: number;
  attrs: number;
  discard?: Required<UblkDiscardParams>;
  charDev: { major: number; minor: number };
  /** 0:0 until the device is started. */
  blockDev: { major: number; minor: number };
}

/** GET_PARAMS. */
export async function getParams(id: number, opts: ControlOptions = {}): Promise<UblkParamsInfo> {
  checkId(id);
  const r = await control('GET_PARAMS', id, null, opts.timeoutMs ?? QUICK_TIMEOUT_MS) as RawParams;
  const info: UblkParamsInfo = {
    sizeBytes: r.devSectors * 512,
    logicalBlockSize: 2 ** r.logicalBsShift,
    physicalBlockSize: 2 ** r.physicalBsShift,
    ioMinBytes: 2 ** r.ioMinShift,
    ioOptBytes: 2 ** r.ioOptShift,
    maxSectors: r.maxSectors,
    attrs: r.attrs,
    charDev: { major: r.charMajor ?? 0, minor: r.charMinor ?? 0 },
    blockDev: { major: r.diskMajor ?? 0, minor: r.diskMinor ?? 0 },
  };
  if (r.types & UBLK_PARAM_TYPE.DISCARD) {
    info.discard = {
      granularityBytes: r.discardGranularity,
      alignmentBytes: r.discardAlignment,
      maxDiscardSectors: r.maxDiscardSectors,
      maxWriteZeroesSectors: r.maxWriteZeroesSectors,
    };
  }
  return info;
}

export interface DaemonOptions extends ControlOptions {
  /** The daemon's pid recorded in the device; default this process. */
  pid?: number;
}

/**
 * START_DEV: creates /dev/ublkbN. Blocks in the kernel until every tag of every queue is
 * FETCHed, so open the queues first; the partition scan then sends reads to them.
 */
export async function startDevice(id: number, opts: DaemonOptions = {}): Promise<void> {
  checkId(id);
  await control('START_DEV', id, { pid: opts.pid ?? process.pid }, opts.timeoutMs ?? BLOCKING_TIMEOUT_MS);
}

/**
 * STOP_DEV: removes /dev/ublkbN. Waits for in-flight requests, so the queues must keep being
 * served; afterwards every queue reports stopped (all tags aborted).
 */
export async function stopDevice(id: number, opts: ControlOptions = {}): Promise<void> {
  checkId(id);
  await control('STOP_DEV', id, null, opts.timeoutMs ?? BLOCKING_TIMEOUT_MS);
}

/**
 * DEL_DEV: stops the device if needed and frees its id. Blocks until /dev/ublkcN is released:
 * close the queues (and any /dev/ublkbN fds) first.
 */
export async function deleteDevice(id: number, opts: ControlOptions = {}): Promise<void> {
  checkId(id);
  await control('DEL_DEV', id, null, opts.timeoutMs ?? BLOCKING_TIMEOUT_MS);
}

export interface StartRecoveryOptions {
  /** Time between EBUSY retries. */
  retryIntervalMs?: number;
  /** Total time to keep retrying EBUSY. */
  timeoutMs?: number;
}

/**
 * START_USER_RECOVERY, retrying EBUSY (the dead daemon's /dev/ublkcN not yet released, or the
 * device not yet QUIESCED) every retryIntervalMs (100) for up to timeoutMs (30 s).
 */
export async function startUserRecovery(id: number, opts: StartRecoveryOptions = {}): Promise<void> {
  checkId(id);
  const interval = opts.retryIntervalMs ?? 100;
  const deadline = Date.now() + (opts.timeoutMs ?? BLOCKING_TIMEOUT_MS);
  for (;;) {
    try {
      await control('START_USER_RECOVERY', id, null, QUICK_TIMEOUT_MS);
      return;
    } catch (e) {
      if (!isUblkSystemError(e, 'EBUSY') || Date.now() + interval > deadline) throw e;
    }
    await sleep(interval);
  }
}

/**
 * END_USER_RECOVERY: blocks in the kernel until every tag is FETCHed again, then makes the
 * device LIVE and lets the queued (and, with reissue, re-sent) requests through.
 */
export async function endUserRecovery(id: number, opts: DaemonOptions = {}): Promise<void> {
  checkId(id);
  await control('END_USER_RECOVERY', id, { pid: opts.pid ?? process.pid }, opts.timeoutMs ?? BLOCKING_TIMEOUT_MS);
}

export interface WaitStateOptions {
  timeoutMs?: number;
  intervalMs?: number;
}

/** Polls GET_DEV_INFO until the device is in `state`; returns its info. */
export async function waitForDeviceState(id: number, state: UblkDeviceState,
  opts: WaitStateOptions = {}): Promise<UblkDeviceInfo> {
  const deadline = Date.now() + (opts.timeoutMs ?? QUICK_TIMEOUT_MS);
  for (;;) {
    const info = await getDeviceInfo(id);
    if (info.state === state) return info;
    if (Date.now() >= deadline) {
      throw systemError('ETIMEDOUT', 110,
        `device ${id} did not become ${state} (still ${info.state})`, 'GET_DEV_INFO');
    }
    await sleep(opts.intervalMs ?? 50);
  }
}
