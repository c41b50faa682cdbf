import { Command } from 'commander';
import { askControl } from '../daemon/control.js';
import { controlPath, daemonAlive, listStates, pidAlive, removeDeviceFiles, runDir, type DeviceState } from '../daemon/rundir.js';
import { matchDevice } from './devices.js';
import { CliError, EXIT } from './errors.js';
import { rmSync } from 'node:fs';
import { fileIdentity, isFile, isProcess } from '../daemon/identity.js';
import { deleteDevice, stopDevice } from '@wsblk/native';
import { kernelState } from '../ublk/frontend.js';

async function disconnectOne(dir: string, s: DeviceState): Promise<void> {
  const warn = (m: string) => process.stderr.write(`wsblk: ${s.id}: ${m}\n`);
  if (daemonAlive(s)) {
    // The daemon flushes, finishes in-flight requests and removes its files before answering.
    await askControl(controlPath(dir, s.id), { cmd: 'disconnect' }, 60_000);
    for (let i = 0; i < 100 && daemonAlive(s); i++) await new Promise((r) => setTimeout(r, 50));
  }
  // A dead daemon leaves its files (and an NBD socket, or a QUIESCED ublk device) behind.
  // Only what the daemon recorded as its own is stopped or removed: a pid may be another
  // process by now, a socket path may be another device's socket.
  if (s.supervisorPid && pidAlive(s.supervisorPid)) {
    if (!isProcess(s.identity?.supervisor, s.supervisorPid)) {
      warn(`left process ${s.supervisorPid} running: it is not the supervisor this device recorded`);
    } else {
      // The supervisor exits by itself once its daemon has exited cleanly: it may be gone by now.
      try {
        process.kill(s.supervisorPid, 'SIGKILL');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
      }
    }
  }
  if (s.socket && fileIdentity(s.socket)) {
    if (isFile(s.identity?.socket, s.socket)) rmSync(s.socket, { force: true });
    else warn(`left ${s.socket} in place: it is not the socket this device created (another device's, or no socket)`);
  }
  if (s.kind === 'ublk' && s.devId !== undefined && (await kernelState(s.devId))) {
    await stopDevice(s.devId).catch(() => {});
    await deleteDevice(s.devId);
  }
  removeDeviceFiles(dir, s.id);
}

export function disconnectCommand(): Command {
  return new Command('disconnect')
    .summary('detach a device')
    .description('Detach a device: its daemon stops taking requests, finishes those in flight, flushes, '
      + 'closes the connection and removes the device. DEVICE is an id from `wsblk list`, a device '
      + 'path (/dev/ublkbN), an NBD socket path or URI. For a device whose daemon died, it stops only '
      + 'the supervisor and removes only the socket that the daemon recorded as its own (process start '
      + 'time, socket inode); a pid or path that is something else by now is left, with a warning.')
    .argument('[device]', 'id, device path, socket path or URI')
    .option('--all', 'detach every device')
    .action(async (what: string | undefined, o: { all?: boolean }) => {
      if (!what && !o.all) throw new CliError('name a device (see `wsblk list`) or use --all', EXIT.USAGE);
      if (what && o.all) throw new CliError('give a device or --all, not both', EXIT.USAGE);
      const dir = runDir();
      const states = listStates(dir);
      const targets = o.all ? states : [matchDevice(states, what!)].filter((s): s is DeviceState => !!s);
      if (!o.all && targets.length === 0) throw new CliError(`no device '${what}' (see \`wsblk list\`)`, EXIT.NO_DEVICE);
      let failed = 0;
      for (const s of targets) {
        try {
          await disconnectOne(dir, s);
          process.stdout.write(`${s.device}\n`);
        } catch (e) {
          failed++;
          process.stderr.write(`wsblk: ${s.id}: ${(e as Error).message}\n`);
        }
      }
      if (failed) throw new CliError(`${failed} of ${targets.length} devices failed to disconnect`);
    });
}
