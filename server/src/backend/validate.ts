import { Errno, Op, type BlockRequest } from '@wsblk/shared';
import type { BackendInfo } from './backend.js';

/** What a connection may do beyond what the backend offers. */
export interface RequestLimits {
  /** The token, the export or the session is read-only. */
  readOnly: boolean;
  /** Largest READ/WRITE agreed at the hello. */
  maxPayload: number;
}

/**
 * The one check in front of the backend: range against the size of the moment, writes against
 * read-only, payloads against the agreed maximum. Returns an errno, or 0 when it may run.
 */
export function validate(req: BlockRequest, info: BackendInfo, limits: RequestLimits): number {
  const readOnly = info.readOnly || limits.readOnly;
  const end = req.offset + req.length;
  switch (req.op) {
    case Op.Read:
      if (req.length > limits.maxPayload) return Errno.EOVERFLOW;
      return end > info.size ? Errno.EINVAL : 0;
    case Op.Write:
      if (readOnly) return Errno.EPERM;
      if (req.length > limits.maxPayload) return Errno.EOVERFLOW;
      return end > info.size ? Errno.ENOSPC : 0;
    case Op.Flush:
      return 0;
    case Op.Discard:
      if (readOnly) return Errno.EPERM;
      return end > info.size ? Errno.EINVAL : 0;
    case Op.WriteZeroes:
      if (readOnly) return Errno.EPERM;
      return end > info.size ? Errno.ENOSPC : 0;
    case Op.Checksum:
      return end > info.size ? Errno.EINVAL : 0;
    case Op.MetaRead:
      return 0;
    case Op.MetaWrite:
      return readOnly ? Errno.EPERM : 0;
  }
}
