import { closeSync, openSync } from 'node:fs';
import { Command, Option } from 'commander';
import { getDeviceInfo } from '@wsblk/native';
import { nbdFrontend, ublkFrontend } from '../daemon/frontends.js';
import { printProgress, relayReady, spawnWsblk, supervise, waitReady, type ReadyMessage } from '../daemon/launch.js';
import { listStates, logPath, pidAlive, runDir, type DeviceState } from '../daemon/rundir.js';
import { runDaemon } from './connect.js';
import { matchDevice } from './devices.js';
import { CliError, EXIT } from './errors.js';

interface RecoverOptions {
  foreground?: boolean;
  supervise: boolean;
  readyIpc?: boolean;
  supervised?: boolean;
}

export function recoverCommand(): Command {
  return new Command('recover')
    .summary('take over a device whose daemon died')
    .description('Start a new daemon for a device whose daemon died (SIGKILL, crash). A ublk device: '
      + 'the kernel keeps it QUIESCED and holds its I/O; the new daemon resumes the server session '
      + '(the server fences the dead daemon\'s connection), fetches every tag and ends the recovery, '
      + 'and the kernel re-sends what the dead daemon held: applications see no error. A supervised '
      + 'device (the default of connect) is recovered automatically; this is for --no-supervise. '
      + 'An NBD export: the new daemon resumes every server session (no --steal, no waiting for the '
      + 'dead one\'s sessions to expire), a replica set its resync where it stopped, and listens on '
      + 'the same socket again; NBD clients reconnect to it (qemu with reconnect-delay, nbd-client -persist).')
    .argument('<device>', 'an id from `wsblk list`, /dev/ublkbN, or an NBD export\'s socket')
    .option('--foreground', 'run the new daemon in this process')
    .option('--no-supervise', 'ublk: do not start a supervisor for the new daemon (an NBD export has none)')
    .addOption(new Option('--ready-ipc').hideHelp())
    .addOption(new Option('--supervised').hideHelp())
    .action(async (what: string, o: RecoverOptions, cmd: Command) => {
      const dir = runDir();
      const state = matchDevice(listStates(dir), what);
      if (!state) throw new CliError(`no device '${what}' (see \`wsblk list\`)`, EXIT.NO_DEVICE);
      if (state.kind === 'ublk' && state.devId === undefined) {
        throw new CliError(`${state.id}: its state names no ublk device id: disconnect it and connect again`);
      }
      if (state.kind === 'nbd' && !state.socket) {
        throw new CliError(`${state.id}: its state names no socket: disconnect it and connect again`);
      }
      if (!state.target) {
        throw new CliError(`${state.id} was connected by an older wsblk (its state has no target): disconnect it and connect again`);
      }
      if (!o.supervised && state.pid && state.pid !== process.pid && pidAlive(state.pid)) {
        throw new CliError(`${state.device} is served by daemon ${state.pid}: nothing to recover`);
      }
      // NBD exports have no supervisor (connect starts none for them).
      const supervised = state.kind === 'nbd' ? false
        : cmd.getOptionValueSource('supervise') === 'cli' ? o.supervise : state.options.supervise !== false;
      if (!o.foreground) return recoverInBackground(dir, state, supervised);
      if (supervised && !o.supervised) {
        const args = ['recover', state.id, '--foreground', '--ready-ipc', '--supervised'];
        const code = await supervise({
          id: state.id, dir, startArgs: args, recoverArgs: args,
          report: (m) => {
            relayReady(m, o.readyIpc);
            if (m.error !== undefined) throw new CliError(m.error ?? 'recovery failed', m.exitCode ?? EXIT.FAILURE);
          },
        });
        process.exit(code);
      }
      if (state.kind === 'nbd') await recoverNbdHere(state, o);
      else await recoverHere(state, o);
    });
}

/**
 * What every recovered daemon keeps of the dead one: its id, the target with the sessions to
 * resume and their secret (only this device's state file has them), its recorded options, and
 * where it served its metrics.
 */
function takenOver(state: DeviceState) {
  return {
    id: state.id,
    target: state.target!,
    recorded: state.options,
    ...(state.options.metricsListen ? { metricsListen: state.options.metricsListen as { host: string; port: number } } : {}),
  };
}

/** A new daemon for an NBD export: the same sessions, the same socket. */
async function recoverNbdHere(state: DeviceState, o: RecoverOptions): Promise<void> {
  await runDaemon({ ...takenOver(state), kind: 'nbd', frontend: nbdFrontend(state.socket!), extraState: { socket: state.socket! } }, o);
}

async function recoverHere(state: DeviceState, o: RecoverOptions): Promise<void> {
  const devId = state.devId!;
  const info = await getDeviceInfo(devId).catch((e: Error) => {
    throw new CliError(`${state.device}: ${e.message}`);
  });
  if (info.state !== 'quiesced') {
    throw new CliError(`${state.device} is ${info.state.toUpperCase()}, not QUIESCED: it cannot be recovered`
      + (info.state === 'dead' ? ' (disconnect it and connect again)' : ''));
  }
  await runDaemon({
    ...takenOver(state),
    kind: 'ublk',
    // The kernel holds the I/O while we wait: wait for the server as long as it takes.
    connectTimeoutMs: 0,
    frontend: ublkFrontend({
      id: devId, queues: 0, depth: 0, maxIoBytes: 0, blockSize: 512,
      ...(typeof state.options.failfastMs === 'number' ? { failfastMs: state.options.failfastMs } : {}),
    }, true),
    extraState: { devId, ...(o.supervised ? { supervisorPid: process.ppid } : {}) },
  }, o);
}

async function recoverInBackground(dir: string, state: DeviceState, supervised: boolean): Promise<void> {
  const log = logPath(dir, state.id);
  const fd = openSync(log, 'a', 0o600);
  const args = ['recover', state.id, '--foreground', '--ready-ipc', ...(supervised ? [] : ['--no-supervise'])];
  const child = spawnWsblk(args, fd, { detached: true, ownNamespace: state.kind === 'ublk' && !supervised });
  closeSync(fd);
  const r: ReadyMessage = await waitReady(child, log, printProgress);
  if (!r.ready) throw new CliError(r.error ?? 'recovery failed', r.exitCode ?? EXIT.FAILURE);
  child.unref();
  child.disconnect();
  process.stdout.write(r.ready.device + '\n');
}
