// User recovery: a new daemon takes over a device whose daemon died (GET_DEV_INFO,
// START_USER_RECOVERY, FETCH every tag, END_USER_RECOVERY, wait for LIVE).
// When to do it is the caller's policy; this is the sequence of calls.
import { UBLK_F } from './abi.js';
import {
  endUserRecovery, getDeviceInfo, startUserRecovery, waitForDeviceState, type UblkDeviceInfo,
} from './ublk-control.js';
import { systemError } from './errors.js';
import { openQueues, type UblkQueue, type UblkQueueHandlers } from './ublk-queue.js';

export interface RecoverDeviceOptions {
  /** Handlers for queue q. Requests (queued and, with reissue, re-sent) arrive after END. */
  handlers(queueId: number): UblkQueueHandlers;
  /**
   * Runs once every tag is FETCHed, before END_USER_RECOVERY lets requests through: fence the
   * dead daemon's server session here, so none of its late writes lands after a reissued one.
   */
  beforeEnd?(info: UblkDeviceInfo, queues: UblkQueue[]): Promise<void> | void;
  /** How long START_USER_RECOVERY retries EBUSY (the old daemon still exiting). Default 30 s. */
  startTimeoutMs?: number;
  /** END_USER_RECOVERY timeout. Default 30 s. */
  endTimeoutMs?: number;
  /** How long to wait for LIVE after END. Default 10 s. */
  liveTimeoutMs?: number;
  /** Pid recorded as the daemon; default this process. */
  pid?: number;
  /** Per-queue options. */
  openTimeoutMs?: number;
}

export interface RecoveredDevice {
  info: UblkDeviceInfo;
  queues: UblkQueue[];
}

/**
 * Takes over a device left QUIESCED by a dead daemon: GET_DEV_INFO, START_USER_RECOVERY
 * (retrying EBUSY), open every queue and FETCH every tag, beforeEnd, END_USER_RECOVERY (off the
 * JS thread, which keeps serving the queues), then wait until LIVE. No SET_PARAMS: the kernel
 * keeps the parameters. On failure the opened queues are closed and the error is rethrown.
 */
export async function recoverDevice(id: number, opts: RecoverDeviceOptions): Promise<RecoveredDevice> {
  const before = await getDeviceInfo(id);
  if ((before.flags & UBLK_F.USER_RECOVERY) === 0) {
    throw systemError('EINVAL', 22, `device ${id} was created without user recovery; it cannot be taken over`,
      'START_USER_RECOVERY');
  }
  if (before.state === 'dead') {
    throw systemError('EINVAL', 22, `device ${id} is stopped (DEAD); delete it and create a new one`,
      'START_USER_RECOVERY');
  }
  await startUserRecovery(id, { timeoutMs: opts.startTimeoutMs });
  const info = await getDeviceInfo(id);
  const queues = await openQueues({
    device: info,
    handlers: opts.handlers,
    openTimeoutMs: opts.openTimeoutMs,
  });
  try {
    await opts.beforeEnd?.(info, queues);
    await endUserRecovery(id, { pid: opts.pid, timeoutMs: opts.endTimeoutMs });
    const live = await waitForDeviceState(id, 'live', { timeoutMs: opts.liveTimeoutMs ?? 10_000 });
    return { info: live, queues };
  } catch (e) {
    for (const q of queues) q.close();
    throw e;
  }
}
