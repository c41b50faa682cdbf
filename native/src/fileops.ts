// File operations Node's fs module lacks.
import { binding } from './binding.js';

/** fallocate(2) mode bits. */
export const FALLOC = binding.FALLOC;

/** fallocate(2) on the thread pool. Resolves 0 on success, else the errno (positive). */
export function fallocate(fd: number, mode: number, offset: number, length: number): Promise<number> {
  return binding.fallocate(fd, mode, offset, length);
}
