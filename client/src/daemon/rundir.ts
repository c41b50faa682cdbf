import { closeSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isProcess, ownIdentity, type DeviceIdentity } from './identity.js';

/**
 * The run directory holds one record per device: <id>.json (state needed to list, disconnect
 * and recover it), <id>.sock (the daemon's control socket) and <id>.log (the daemon's log).
 * $WSBLK_RUN_DIR, else /run/wsblk for root, else $XDG_RUNTIME_DIR/wsblk, else /tmp/wsblk-<uid>.
 * It must be ours and closed to others (see checkRunDir).
 */
export function runDir(): string {
  const dir = process.env.WSBLK_RUN_DIR
    || (process.getuid?.() === 0 ? '/run/wsblk'
      : process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, 'wsblk') : `/tmp/wsblk-${process.getuid?.()}`);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    // A dangling symbolic link is EEXIST: checkRunDir says what it is.
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot create run directory ${dir}: ${(e as Error).message}`);
  }
  checkRunDir(dir);
  return dir;
}

/**
 * Refuses a run directory that someone else could have filled: its state files name the pids
 * that disconnect stops and the paths it removes. mkdir's mode does not apply to an existing
 * directory (/tmp/wsblk-<uid> is a name anyone can take first), so it is checked as it is.
 */
function checkRunDir(dir: string): void {
  const uid = process.getuid?.();
  if (uid === undefined) return;
  const st = lstatSync(dir);
  const fix = 'remove it or set WSBLK_RUN_DIR to a directory of yours (mode 0700)';
  const mode = `mode 0${(st.mode & 0o777).toString(8)}`;
  let why: string | undefined;
  if (st.isSymbolicLink()) why = 'is a symbolic link';
  else if (!st.isDirectory()) why = 'is not a directory';
  else if (st.uid !== uid) why = `is owned by uid ${st.uid}, not you (${uid})`;
  else if (st.mode & 0o002) why = `is writable by others (${mode})`;
  else if (st.mode & 0o020) why = `is writable by its group (${mode})`;
  if (why) throw new Error(`run directory ${dir} ${why}: ${fix}`);
}

export interface DeviceState {
  id: string;
  kind: 'nbd' | 'ublk';
  /** /dev/ublkbN, or the nbd+unix:// URI. */
  device: string;
  url: string;
  pid: number;
  /** Server session, resumed by a recovering daemon so the server fences the dead one. */
  sessionId: string;
  /** The options the device was connected with (for recover). */
  options: Record<string, unknown>;
  /** For ublk: the kernel device id. */
  devId?: number;
  /** For NBD: the socket path. */
  socket?: string;
  /** Supervisor pid (ublk), if any. */
  supervisorPid?: number;
  /** What ties pid, supervisorPid and socket to this device (written by the daemon: see writeState). */
  identity?: DeviceIdentity;
  startedAt: string;
}

export const statePath = (dir: string, id: string) => join(dir, `${id}.json`);
export const controlPath = (dir: string, id: string) => join(dir, `${id}.sock`);
export const logPath = (dir: string, id: string) => join(dir, `${id}.log`);

/**
 * Writes a device's state atomically (write to a temporary file, then rename). The daemon's
 * first write records its identity (its socket listens by then), kept in `state` from then on.
 */
export function writeState(dir: string, state: DeviceState): void {
  if (state.pid === process.pid && state.identity?.daemon?.pid !== process.pid) {
    state.identity = ownIdentity(state.socket, state.supervisorPid);
  }
  const tmp = join(dir, `.${state.id}.json.${process.pid}.tmp`);
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, statePath(dir, state.id));
}

export function readState(dir: string, id: string): DeviceState | undefined {
  try {
    return JSON.parse(readFileSync(statePath(dir, id), 'utf8')) as DeviceState;
  } catch {
    return undefined;
  }
}

export function listStates(dir: string): DeviceState[] {
  const out: DeviceState[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.json') || name.startsWith('.')) continue;
    const s = readState(dir, name.slice(0, -5));
    if (s && typeof s.id === 'string') out.push(s);
  }
  return out;
}

/** Claims the first free id `<prefix>N` by creating its state file exclusively. */
export function claimId(dir: string, prefix: string): string {
  for (let n = 0; n < 10_000; n++) {
    const id = `${prefix}${n}`;
    try {
      closeSync(openSync(statePath(dir, id), 'wx', 0o600));
      return id;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  throw new Error(`no free device id in ${dir}`);
}

export function removeDeviceFiles(dir: string, id: string, keepLog = true): void {
  rmSync(statePath(dir, id), { force: true });
  rmSync(controlPath(dir, id), { force: true });
  if (!keepLog) rmSync(logPath(dir, id), { force: true });
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True while the device's recorded daemon runs (for a record without identity: while its pid does). */
export function daemonAlive(s: DeviceState): boolean {
  if (!s.pid) return false;
  return s.identity?.daemon ? isProcess(s.identity.daemon, s.pid) : pidAlive(s.pid);
}
