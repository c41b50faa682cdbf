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

/**
 * sendmsg(fd, buffers, MSG_DONTWAIT | MSG_NOSIGNAL): the bytes the kernel took (all, part, or
 * none), or a negative errno (-EAGAIN when the send buffer is full). At most IOV_MAX (1024 on
 * Linux) buffers are offered; the caller writes the rest another way. The data is copied into
 * the socket before it returns. WebSocket connections send a message this way when nothing
 * waits in the socket's own queue (WsConnOptions.sendv in @wsblk/shared; bench/RESULTS.md,
 * lever 19).
 */
export function sendv(fd: number, buffers: readonly Buffer[]): number {
  return binding.sendv(fd, buffers);
}
