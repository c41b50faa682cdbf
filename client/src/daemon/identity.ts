// What ties a device to its processes and its NBD socket, beyond a pid and a path: pids are
// reused and a socket path is bound again by the next device, so disconnect checks these
// before it kills or removes anything.
import { lstatSync, readFileSync } from 'node:fs';

/** A process: its pid, its start time (clock ticks after boot) and the boot it started in. */
export interface ProcessIdentity {
  pid: number;
  start: string;
  boot: string;
}

/** A file as created: device, inode and status-change time (an inode number is reused at once). */
export interface FileIdentity {
  dev: string;
  ino: string;
  ctime: string;
}

/** Recorded by the daemon in its state: itself, its supervisor (ublk), its NBD socket. */
export interface DeviceIdentity {
  daemon?: ProcessIdentity;
  supervisor?: ProcessIdentity;
  socket?: FileIdentity;
}

let bootId: string | undefined;

/** The identity of a running process, or undefined if it is gone (or /proc does not say). */
export function processIdentity(pid: number): ProcessIdentity | undefined {
  try {
    bootId ??= readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime); the fields after the command name, which may hold ')' itself, start at 3.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[22 - 3];
    return start ? { pid, start, boot: bootId } : undefined;
  } catch {
    return undefined;
  }
}

/** True if `pid` is alive and is the process `id` names. */
export function isProcess(id: ProcessIdentity | undefined, pid: number): boolean {
  if (!id || id.pid !== pid) return false;
  const now = processIdentity(pid);
  return !!now && now.start === id.start && now.boot === id.boot;
}

/** The identity of the file at `path` (not following a symbolic link), or undefined if there is none. */
export function fileIdentity(path: string): FileIdentity | undefined {
  try {
    const st = lstatSync(path, { bigint: true });
    return { dev: String(st.dev), ino: String(st.ino), ctime: String(st.ctimeNs) };
  } catch {
    return undefined;
  }
}

export function isFile(id: FileIdentity | undefined, path: string): boolean {
  const now = fileIdentity(path);
  return !!id && !!now && now.dev === id.dev && now.ino === id.ino && now.ctime === id.ctime;
}

/**
 * The identity a daemon records for itself: call it in the daemon, once its NBD socket is
 * listening. The supervisor is recorded only while it is still this process's parent.
 */
export function ownIdentity(socket: string | undefined, supervisorPid: number | undefined): DeviceIdentity {
  return {
    daemon: processIdentity(process.pid),
    ...(supervisorPid && supervisorPid === process.ppid ? { supervisor: processIdentity(supervisorPid) } : {}),
    ...(socket ? { socket: fileIdentity(socket) } : {}),
  };
}
