// Resident memory of a process, from /proc/PID/status (VmRSS now, VmHWM the peak so far).
import { readFileSync } from 'node:fs';

/** { rssMiB, hwmMiB } of a live process, or null when it is gone. */
export function memoryOf(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kib = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rssMiB: kib('VmRSS') / 1024, hwmMiB: kib('VmHWM') / 1024 };
}

/** Samples VmRSS of the given pids every intervalMs until stop(); stop() resolves { pid: maxRssMiB }. */
export function sampleRss(pids, intervalMs = 100) {
  const max = Object.fromEntries(pids.map((p) => [p, 0]));
  const tick = () => {
    for (const p of pids) {
      const m = memoryOf(p);
      if (m && m.rssMiB > max[p]) max[p] = m.rssMiB;
    }
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      tick();
      return max;
    },
  };
}
