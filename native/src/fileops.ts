// File and process operations Node lacks.
import { binding } from './binding.js';

/** fallocate(2) mode bits. */
export const FALLOC = binding.FALLOC;

/** fallocate(2) on the thread pool. Resolves 0 on success, else the errno (positive). */
export function fallocate(fd: number, mode: number, offset: number, length: number): Promise<number> {
  return binding.fallocate(fd, mode, offset, length);
}

/**
 * Sets glibc's malloc trim threshold: free memory above it at the top of the heap goes back to
 * the kernel. The daemon lowers it so that memory freed after a burst of large requests leaves
 * its RSS (bench/RESULTS.md, lever 13). False where the C library is not glibc.
 */
export function mallocTrimThreshold(bytes: number): boolean {
  return binding.mallocTrimThreshold(bytes);
}
