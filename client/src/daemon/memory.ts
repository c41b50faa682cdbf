// Memory settings of a daemon process: one device per process, and issue 4's budget is
// 150 MiB of RSS per device at queue depth 128 (bench/RESULTS.md, lever 13).
import { setFlagsFromString } from 'node:v8';
import { mallocTrimThreshold } from '@wsblk/native';
import { logger } from '@wsblk/shared';

const log = logger('daemon');

/** glibc keeps at most this much free memory at the top of its heap (default: up to 64 MiB). */
const DAEMON_TRIM_THRESHOLD = 1 << 20;
/** V8 flag: the young generation keeps its first size instead of doubling up to 2 x 16 MiB. */
const DAEMON_V8_FLAGS = '--semi-space-growth-factor=1';

/**
 * Applies both settings to this process. V8 grows its young generation by 16x under a
 * daemon's request rate, and glibc keeps what 1 MiB requests freed; together about 30 MiB of
 * RSS that buys no measurable speed. Call early, before the data path runs.
 */
export function tuneDaemonMemory(): void {
  try {
    setFlagsFromString(DAEMON_V8_FLAGS);
  } catch (e) {
    log.debug(`V8 flags ${DAEMON_V8_FLAGS} not applied: ${(e as Error).message}`);
  }
  if (!mallocTrimThreshold(DAEMON_TRIM_THRESHOLD)) log.debug('malloc trim threshold not set (not glibc)');
}
