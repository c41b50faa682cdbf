// The raw addon, loaded once. Internal to this package: only the typed modules use it.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Device info as the addon decodes ublksrv_ctrl_dev_info. */
export interface RawDevInfo {
  nrHwQueues: number;
  queueDepth: number;
  state: number;
  maxIoBufBytes: number;
  devId: number;
  ublksrvPid: number;
  flags: number;
  ublksrvFlags: number;
  ownerUid: number;
  ownerGid: number;
}

/** ublk_params flattened (basic + discard + devt). */
export interface RawParams {
  types: number;
  attrs: number;
  logicalBsShift: number;
  physicalBsShift: number;
  ioOptShift: number;
  ioMinShift: number;
  maxSectors: number;
  chunkSectors: number;
  devSectors: number;
  virtBoundaryMask: number;
  discardAlignment: number;
  discardGranularity: number;
  maxDiscardSectors: number;
  maxWriteZeroesSectors: number;
  maxDiscardSegments: number;
  charMajor?: number;
  charMinor?: number;
  diskMajor?: number;
  diskMinor?: number;
}

export type ControlCommandName =
  | 'GET_DEV_INFO' | 'ADD_DEV' | 'DEL_DEV' | 'START_DEV' | 'STOP_DEV' | 'SET_PARAMS'
  | 'GET_PARAMS' | 'START_USER_RECOVERY' | 'END_USER_RECOVERY' | 'GET_DEV_INFO2' | 'GET_FEATURES';

export interface RawQueue {
  /** depth * maxIoBytes; tag t at t * maxIoBytes. */
  readonly buffer: ArrayBuffer;
  /** Per delivered request: tag, op_flags, nr_sectors, start_sector. */
  readonly requests: Float64Array;
  /** Per fault: tag, negative errno. */
  readonly faults: Int32Array;
  /** Filled by JS before commit(n): tag, result. */
  readonly commits: Int32Array;
  fetchAll(): number;
  commit(n: number): number;
  close(): void;
}

export interface RawUnixListener {
  close(): void;
  resume(): void;
}

export interface RawBinding {
  fallocate(fd: number, mode: number, offset: number, length: number): Promise<number>;
  mallocTrimThreshold(bytes: number): boolean;
  dupFd(fd: number): number;
  sendv(fd: number, buffers: readonly Buffer[]): number;
  FALLOC: { KEEP_SIZE: number; PUNCH_HOLE: number; ZERO_RANGE: number };
  control(cmd: number, devId: number, arg: object | null, timeoutMs: number): Promise<unknown>;
  probeControl(): { ok: true } | { ok: false; code: string; errno: number; message: string };
  kernelRelease(): string;
  CTRL_CMD: Record<ControlCommandName, number>;
  openCharDevice(devId: number): number;
  UblkQueue: new (
    charDevFd: number,
    devId: number,
    queueId: number,
    depth: number,
    maxIoBytes: number,
    onBatch: (nRequests: number, nFaults: number) => void,
  ) => RawQueue;
  UnixListener: new (path: string, backlog: number, onAccept: (fdOrNegErrno: number) => void) => RawUnixListener;
}

export const binding: RawBinding = require('../build/Release/wsblk_native.node');
