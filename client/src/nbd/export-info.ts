// What the NBD frontend tells clients about the export, derived once from the target's DiskInfo.
import type { DiskInfo } from '../target.js';
import {
  MAX_REQUEST_BYTES,
  TFLAG_CAN_MULTI_CONN,
  TFLAG_HAS_FLAGS,
  TFLAG_READ_ONLY,
  TFLAG_SEND_FLUSH,
  TFLAG_SEND_FUA,
  TFLAG_SEND_TRIM,
  TFLAG_SEND_WRITE_ZEROES,
} from './constants.js';

export interface ExportInfo {
  /** Name listed by NBD_OPT_LIST and returned by NBD_INFO_NAME. */
  name: string;
  description: string | undefined;
  size: number;
  /** Transmission flags. */
  flags: number;
  readOnly: boolean;
  flush: boolean;
  fua: boolean;
  trim: boolean;
  writeZeroes: boolean;
  /** NBD_INFO_BLOCK_SIZE: minimum (1: any alignment works), preferred, maximum payload. */
  minBlock: number;
  preferredBlock: number;
  maxBlock: number;
  /** Largest READ/WRITE a single target request may carry; larger NBD requests are split. */
  maxTargetPayload: number;
  /** Largest READ/WRITE accepted at all; beyond it EINVAL. */
  maxRequest: number;
}

export interface ExportInfoOptions {
  /**
   * Advertise NBD_FLAG_CAN_MULTI_CONN: only true when a FLUSH through one connection makes
   * the writes acknowledged on every connection stable (one shared target with one cache).
   */
  multiConn?: boolean;
  description?: string;
}

export function describeExport(info: DiskInfo, options: ExportInfoOptions = {}): ExportInfo {
  if (!Number.isSafeInteger(info.size) || info.size < 0) throw new RangeError(`export size ${info.size} is invalid`);
  if (!(info.maxPayload >= 512)) throw new RangeError(`maxPayload ${info.maxPayload} is below 512`);
  const writable = !info.readOnly;
  const flush = info.flush;
  const fua = writable && info.fua;
  const trim = writable && info.discard;
  const writeZeroes = writable && info.writeZeroes;
  let flags = TFLAG_HAS_FLAGS;
  if (info.readOnly) flags |= TFLAG_READ_ONLY;
  if (flush) flags |= TFLAG_SEND_FLUSH;
  if (fua) flags |= TFLAG_SEND_FUA;
  if (trim) flags |= TFLAG_SEND_TRIM;
  if (writeZeroes) flags |= TFLAG_SEND_WRITE_ZEROES;
  if (options.multiConn) flags |= TFLAG_CAN_MULTI_CONN;
  const preferred = isPowerOfTwo(info.blockSize) && info.blockSize >= 512 ? info.blockSize : 4096;
  const maxBlock = Math.min(info.maxPayload, MAX_REQUEST_BYTES);
  return {
    name: info.exportName,
    description: options.description,
    size: info.size,
    flags,
    readOnly: info.readOnly,
    flush,
    fua,
    trim,
    writeZeroes,
    minBlock: 1,
    preferredBlock: Math.min(preferred, maxBlock),
    maxBlock,
    maxTargetPayload: info.maxPayload,
    maxRequest: Math.max(MAX_REQUEST_BYTES, maxBlock),
  };
}

/** "" is the default export; the target's own name is accepted too. */
export function acceptsName(exp: ExportInfo, name: string): boolean {
  return name === '' || name === exp.name;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}
