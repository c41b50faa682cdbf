import { askControl } from '../daemon/control.js';
import { controlPath, listStates, pidAlive, runDir, type DeviceState } from '../daemon/rundir.js';

export interface DeviceEntry {
  id: string;
  kind: string;
  device: string;
  url: string;
  pid: number;
  state: string;
  inflight: number | null;
  reconnects: number | null;
  [key: string]: unknown;
}

/** Every device in the run directory, with live figures from its daemon where it answers. */
export async function collectDevices(): Promise<Array<{ state: DeviceState; entry: DeviceEntry }>> {
  const dir = runDir();
  const states = listStates(dir);
  return Promise.all(states.map(async (s) => {
    const base: DeviceEntry = {
      id: s.id, kind: s.kind, device: s.device, url: s.url, pid: s.pid, state: 'dead', inflight: null, reconnects: null,
    };
    if (!s.pid) return { state: s, entry: { ...base, state: 'starting' } };
    if (!pidAlive(s.pid)) return { state: s, entry: base };
    try {
      const live = await askControl<Record<string, unknown>>(controlPath(dir, s.id), { cmd: 'status' }, 2000);
      return { state: s, entry: { ...base, ...live } as DeviceEntry };
    } catch {
      return { state: s, entry: { ...base, state: 'unresponsive' } };
    }
  }));
}

/** Finds a device by id, device path, NBD socket path or URI. */
export function matchDevice(states: DeviceState[], what: string): DeviceState | undefined {
  return states.find((s) => s.id === what || s.device === what || s.socket === what
    || (s.devId !== undefined && (what === `/dev/ublkc${s.devId}` || what === String(s.devId))));
}
