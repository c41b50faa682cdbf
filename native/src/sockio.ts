// Socket calls Node lacks (csrc/sockio.cc).
import { binding } from './binding.js';

/**
 * fcntl(fd, F_DUPFD_CLOEXEC): a duplicate of a descriptor, or a negative errno. The storage
 * server re-opens http's upgrade sockets with onread on a duplicate (acceptUpgrade in
 * @wsblk/shared).
 */
export function dupFd(fd: number): number {
  return binding.dupFd(fd);
}
