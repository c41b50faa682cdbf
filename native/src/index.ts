// Typed access to the native addon. Nothing above this module touches the raw binding.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface RawBinding {
  fallocate(fd: number, mode: number, offset: number, length: number): Promise<number>;
  FALLOC: { KEEP_SIZE: number; PUNCH_HOLE: number; ZERO_RANGE: number };
}

const binding: RawBinding = require('../build/Release/wsblk_native.node');

export const FALLOC = binding.FALLOC;

/** fallocate(2) on the thread pool. Resolves 0 on success, else the errno (positive). */
export function fallocate(fd: number, mode: number, offset: number, length: number): Promise<number> {
  return binding.fallocate(fd, mode, offset, length);
}
