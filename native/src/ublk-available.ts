// Whether ublk can be used here, without throwing: for CLIs and tests that pick a frontend.
import { binding } from './binding.js';

export interface UblkAvailability {
  ok: boolean;
  /** Why not, in one line (e.g. "ublk_drv is not loaded (modprobe ublk_drv): ..."). */
  reason?: string;
  /** errno code of the failed probe, e.g. 'ENOENT', 'EACCES'. */
  code?: string;
}

/**
 * Opens /dev/ublk-control and creates an SQE128 io_uring, synchronously. Does not prove the
 * kernel understands ioctl-encoded commands: getFeatures() does (Linux >= 6.5).
 */
export function ublkAvailable(): UblkAvailability {
  if (process.platform !== 'linux') return { ok: false, reason: `ublk needs Linux (this is ${process.platform})` };
  const p = binding.probeControl();
  if (p.ok) return { ok: true };
  return { ok: false, reason: p.message, code: p.code };
}
