// A daemon started in a mount namespace of its own (launch.ts) gets a copy of its starter's
// mounts. A recovered daemon's starter (the supervisor, or `wsblk recover`) may have a
// filesystem of this very device mounted: the copy would keep that filesystem alive after the
// user's umount (no final journal checkpoint, the device still held open at disconnect, and
// its last writes lost then). So the recovered daemon detaches those copies, in its namespace only.
import { execFile } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { logger } from '@wsblk/shared';

const log = logger('daemon');

/** Set by the launcher in the environment of a daemon it starts through unshare(1). */
export const OWN_MOUNT_NS_ENV = 'WSBLK_OWN_MOUNT_NS';

/** Mount points (deepest first) of the device `maj:min` in /proc/self/mountinfo text. */
export function mountsOfDevice(mountinfo: string, majMin: string): string[] {
  const points: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f[2] !== majMin || f[4] === undefined) continue;
    // mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
    points.push(f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return points.sort((a, b) => b.length - a.length);
}

/**
 * Lazily unmounts, in this daemon's own mount namespace, every mount of `devPath` it was
 * started with. Does nothing outside a namespace of our own (a --foreground daemon shares the
 * user's mounts: those are theirs). Runs after the device serves again and does not wait: if
 * ours were the last reference, the filesystem's final writes go through this daemon.
 */
export function detachOwnDeviceMounts(devPath: string): void {
  if (process.env[OWN_MOUNT_NS_ENV] !== '1') return;
  let points: string[];
  try {
    if (readlinkSync('/proc/self/ns/mnt') === readlinkSync('/proc/1/ns/mnt')) return;
    const majMin = readFileSync(`/sys/class/block/${basename(devPath)}/dev`, 'utf8').trim();
    points = mountsOfDevice(readFileSync('/proc/self/mountinfo', 'utf8'), majMin);
  } catch (e) {
    log.warn(`cannot look for mounts of ${devPath} in the daemon's namespace: ${(e as Error).message}`);
    return;
  }
  for (const mp of points) {
    execFile('umount', ['-l', mp], (err) => {
      if (err) log.warn(`detaching the daemon's copy of ${mp} (${devPath}) failed: ${err.message.trim()}`);
      else log.info(`detached the daemon's copy of ${mp} (a mount of ${devPath} it was started with; the host's stays)`);
    });
  }
}
