import { closeSync, openSync } from 'node:fs';
import { Command, Option } from 'commander';
import { getDeviceInfo } from '@wsblk/native';
import { ublkFrontend } from '../daemon/frontends.js';
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
    .summary('take over a ublk device whose daemon died')
    .description('Start a new daemon for a ublk device whose daemon died (SIGKILL, crash). The kernel '
      + 'keeps such a device QUIESCED and holds its I/O; the new daemon resumes the server session '
      + '(the server fences the dead daemon\'s connection), fetches every tag and ends the recovery, '
      + 'and the kernel re-sends what the dead daemon held: applications see no error. A supervised '
      + 'device (the default of connect) is recovered automatically; this is for --no-supervise.')
    .argument('<device>', 'an id from `wsblk list`, or /dev/ublkbN')
    .option('--foreground', 'run the new daemon in this process')
    .option('--no-supervise', 'do not start a supervisor for the new daemon')
    .addOption(new Option('--ready-ipc').hideHelp())
    .addOption(new Option('--supervised').hideHelp())
    .action(async (what: string, o: RecoverOptions, cmd: Command) => {
      const dir = runDir();
      const state = matchDevice(listStates(dir), what);
      if (!state) throw new CliError(`no device '${what}' (see \`wsblk list\`)`, EXIT.NO_DEVICE);
      if (state.kind !== 'ublk' || state.devId === undefined) {
        throw new CliError(`${state.id} is an NBD export: there is nothing to recover; connect it again`);
      }
      if (!state.target) {
        throw new CliError(`${state.id} was connected by an older wsblk (its state has no target): disconnect it and connect again`);
      }
      if (!o.supervised && state.pid && state.pid !== process.pid && pidAlive(state.pid)) {
        throw new CliError(`${state.device} is served by daemon ${state.pid}: nothing to recover`);
      }
      const supervised = cmd.getOptionValueSource('supervise') === 'cli' ? o.supervise : state.options.supervise !== false;
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
      await recoverHere(state, o);
    });
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
    id: state.id,
    kind: 'ublk',
    // The session to resume and its secret: only this device's state file has them.
    target: state.target!,
    // The kernel holds the I/O while we wait: wait for the server as long as it takes.
    connectTimeoutMs: 0,
    frontend: ublkFrontend({
      id: devId, queues: 0, depth: 0, maxIoBytes: 0, blockSize: 512,
      ...(typeof state.options.failfastMs === 'number' ? { failfastMs: state.options.failfastMs } : {}),
    }, true),
    recorded: state.options,
    // A recovered daemon serves its metrics where the first one did.
    ...(state.options.metricsListen ? { metricsListen: state.options.metricsListen as { host: string; port: number } } : {}),
    extraState: { devId, ...(o.supervised ? { supervisorPid: process.ppid } : {}) },
  }, o);
}

async function recoverInBackground(dir: string, state: DeviceState, supervised: boolean): Promise<void> {
  const log = logPath(dir, state.id);
  const fd = openSync(log, 'a', 0o600);
  const args = ['recover', state.id, '--foreground', '--ready-ipc', ...(supervised ? [] : ['--no-supervise'])];
  const child = spawnWsblk(args, fd, { detached: true, ownNamespace: !supervised });
  closeSync(fd);
  const r: ReadyMessage = await waitReady(child, log, printProgress);
  if (!r.ready) throw new CliError(r.error ?? 'recovery failed', r.exitCode ?? EXIT.FAILURE);
  child.unref();
  child.disconnect();
  process.stdout.write(r.ready.device + '\n');
}
