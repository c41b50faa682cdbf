import { Errno } from './constants.js';

/** A peer sent something the protocol does not allow. The connection is closed with this reason. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

const ERRNO_NAMES: Record<number, string> = {
  [Errno.OK]: 'OK',
  [Errno.EPERM]: 'EPERM',
  [Errno.EIO]: 'EIO',
  [Errno.ENOMEM]: 'ENOMEM',
  [Errno.EINVAL]: 'EINVAL',
  [Errno.ENOSPC]: 'ENOSPC',
  [Errno.EOVERFLOW]: 'EOVERFLOW',
  [Errno.ENOTSUP]: 'ENOTSUP',
  [Errno.ESHUTDOWN]: 'ESHUTDOWN',
  [Errno.ESTALE]: 'ESTALE',
  [Errno.ETIMEDOUT]: 'ETIMEDOUT',
};

export function errnoName(status: number): string {
  return ERRNO_NAMES[status] ?? `errno ${status}`;
}

/** Maps a Node.js system error (err.code) to the status sent in a reply. */
export function statusOfError(err: unknown): number {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return Errno.ENOSPC;
    case 'EPERM':
    case 'EACCES':
    case 'EROFS':
      return Errno.EPERM;
    case 'EINVAL':
      return Errno.EINVAL;
    case 'ESTALE':
      return Errno.ESTALE;
    case 'ENOMEM':
      return Errno.ENOMEM;
    case 'EOPNOTSUPP':
    case 'ENOTSUP':
      return Errno.ENOTSUP;
    default:
      return Errno.EIO;
  }
}
