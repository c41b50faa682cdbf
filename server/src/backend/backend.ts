// Where an export's blocks live. Backends hold data; filters (delay, error) wrap a Backend and
// return one, in the manner of nbdkit's plugins and filters. Offsets and lengths are checked
// against size by the session before a backend sees them.
import type { ExportCaps } from '@wsblk/shared';

/** FLUSH/FUA mean something when data can be volatile; a read-only backend offers no writes. */
export type BackendInfo = ExportCaps;

export interface Backend {
  readonly info: BackendInfo;
  /** A short description for logs, e.g. "file:/srv/disk0.img". */
  readonly description: string;
  /**
   * The data, which may be a view of the backend's own memory (MemoryBackend): callers only
   * send it, never modify it, and a later overlapping write may show through it.
   */
  read(offset: number, length: number): Promise<Buffer>;
  /** With fua, resolves only once the data is on stable storage. */
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  /** Every write that resolved before this call is on stable storage when it resolves. */
  flush(): Promise<void>;
  /** The range reads back as zeroes afterwards (we never advertise otherwise). */
  discard(offset: number, length: number): Promise<void>;
  /** noUnmap: keep the blocks allocated. */
  writeZeroes(offset: number, length: number, noUnmap: boolean, fua: boolean): Promise<void>;
  close(): Promise<void>;
}
