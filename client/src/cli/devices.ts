import { askControl } from '../daemon/control.js';
import { kernelState } from '../ublk/frontend.js';
import { controlPath, daemonAlive, listStates, runDir, type DeviceState } from '../daemon/rundir.js';

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
      id: s.id, kind: s.kind, device: s.device, url: s.target?.set ? s.target.set.replicas.map((r) => r.url).join(',') : s.url, pid: s.pid, state: 'dead', inflight: null, reconnects: null,
      // A dead daemon's gateways too: the one its session lives on is where recover resumes it.
      ...(s.target?.failover?.length ? { gateway: s.target.gateway ?? s.target.url, failover: s.target.failover } : {}),
    };
    let entry: DeviceEntry;
    if (!s.pid) entry = { ...base, state: 'starting' };
    else if (!daemonAlive(s)) entry = base;
    else {
      try {
        entry = { ...base, ...(await askControl<Record<string, unknown>>(controlPath(dir, s.id), { cmd: 'status' }, 2000)) } as DeviceEntry;
      } catch {
        entry = { ...base, state: 'unresponsive' };
      }
    }
    if (s.kind === 'ublk' && s.devId !== undefined) {
      // For ublk the kernel's word counts: LIVE, QUIESCED (daemon gone, I/O held), DEAD.
      const k = await kernelState(s.devId);
      entry.connection = entry.state;
      entry.state = k ? k.state : 'GONE';
      if (k && k.daemonPid > 0) entry.pid = k.daemonPid;
      if (s.supervisorPid) entry.supervisorPid = s.supervisorPid;
    }
    return { state: s, entry };
  }));
}

/** Finds a device by id, device path, NBD socket path or URI. */
export function matchDevice(states: DeviceState[], what: string): DeviceState | undefined {
  return states.find((s) => s.id === what || s.device === what || s.socket === what
    || (s.devId !== undefined && (what === `/dev/ublkc${s.devId}` || what === String(s.devId))));
}
