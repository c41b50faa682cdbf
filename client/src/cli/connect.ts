import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { readTokenFile } from '@wsblk/server';
import { ConnectError, parseUrl } from '../transport/remote-disk.js';
import { Daemon } from '../daemon/daemon.js';
import { claimId, logPath, removeDeviceFiles, runDir, type DeviceState } from '../daemon/rundir.js';
import { nbdFrontend } from '../daemon/frontends.js';
import { CliError, EXIT } from './errors.js';
import { secondsArg, sizeArg } from './options.js';

export interface ConnectOptions {
  nbd?: string;
  tokenFile?: string;
  compress: 'lz4' | 'none';
  foreground?: boolean;
  ioTimeout: number;
  connectTimeout: number;
  maxInflight: number;
  /** Hidden: set by the parent of a background daemon. */
  id?: string;
  readyIpc?: boolean;
}

export function connectCommand(): Command {
  return new Command('connect')
    .summary('attach a remote export as a local device')
    .description('Attach a remote export as a local device and print it on stdout once it is ready: '
      + 'an NBD URI (nbd+unix:///?socket=...) with --nbd, else a ublk block device (/dev/ublkbN). '
      + 'The device is served by a daemon that keeps running in the background (its log is in the run '
      + 'directory: $WSBLK_RUN_DIR, /run/wsblk for root, else $XDG_RUNTIME_DIR/wsblk); --foreground '
      + 'keeps it in this process (for systemd). The token comes from --token-file or $WSBLK_TOKEN. '
      + 'A lost connection is retried forever and outstanding requests are replayed, unless --io-timeout.')
    .argument('<url>', 'ws://HOST[:PORT]/EXPORT or wss://... (port 7690 by default)')
    .option('--nbd <socket>', 'serve the export as NBD on this Unix socket instead of a ublk device')
    .option('--token-file <file>', 'file whose first line is the bearer token')
    .addOption(new Option('--compress <algo>', 'compress payloads where it pays').choices(['lz4', 'none']).default('none'))
    .option('--foreground', 'run the daemon in this process; stop with SIGTERM or SIGINT')
    .option('--io-timeout <seconds>', 'fail I/O with EIO after this long without an answer (0 = wait forever)', secondsArg, 0)
    .option('--connect-timeout <seconds>', 'give up the first connect after this long', secondsArg, 30)
    .option('--max-inflight <size>', 'bytes of requests on the wire at once', sizeArg, 64 << 20)
    .addOption(new Option('--id <id>').hideHelp())
    .addOption(new Option('--ready-ipc').hideHelp())
    .action(async (url: string, o: ConnectOptions) => {
      try {
        parseUrl(url);
      } catch (e) {
        throw new CliError((e as Error).message, EXIT.USAGE);
      }
      if (o.tokenFile) readTokenFile(o.tokenFile); // fail now, not in the daemon
      if (!o.nbd) {
        throw new CliError('ublk is not available in this build yet: use --nbd SOCKET to serve the export over NBD', EXIT.FAILURE);
      }
      o.nbd = resolvePath(o.nbd);
      if (o.foreground) await runForeground(url, o);
      else await runBackground(url, o);
    });
}

function transportOptions(url: string, o: ConnectOptions) {
  const token = o.tokenFile ? readTokenFile(o.tokenFile) : process.env.WSBLK_TOKEN;
  return {
    url, token, compress: o.compress, connectTimeoutMs: o.connectTimeout * 1000, ioTimeoutMs: o.ioTimeout * 1000,
    maxInflightBytes: o.maxInflight,
  };
}

async function runForeground(url: string, o: ConnectOptions): Promise<void> {
  const dir = runDir();
  const id = o.id ?? claimId(dir, 'nbd');
  const daemon = new Daemon({
    id, kind: 'nbd', transport: transportOptions(url, o), frontend: nbdFrontend(o.nbd!),
    recorded: { nbd: o.nbd, tokenFile: o.tokenFile, compress: o.compress, ioTimeout: o.ioTimeout, maxInflight: o.maxInflight },
    extraState: { socket: o.nbd },
  });
  let state: DeviceState;
  try {
    state = await daemon.start();
  } catch (e) {
    const code = e instanceof ConnectError ? EXIT.CONNECT : EXIT.FAILURE;
    if (o.readyIpc && process.send) process.send({ error: (e as Error).message, exitCode: code });
    throw new CliError((e as Error).message, code);
  }
  if (o.readyIpc && process.send) {
    process.send({ ready: state });
    process.disconnect?.();
  } else {
    process.stdout.write(state.device + '\n');
  }
  const code = await daemon.done;
  // Let the control socket's answer to `disconnect` leave before exiting.
  setTimeout(() => process.exit(code), 100);
}

/** Starts the daemon as a detached child and waits until it says ready (or why not). */
async function runBackground(url: string, o: ConnectOptions): Promise<void> {
  const dir = runDir();
  const id = claimId(dir, 'nbd');
  const log = logPath(dir, id);
  const fd = openSync(log, 'a', 0o600);
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  const args = [main, 'connect', url, '--foreground', '--ready-ipc', '--id', id, '--nbd', o.nbd!,
    '--compress', o.compress, '--io-timeout', String(o.ioTimeout), '--connect-timeout', String(o.connectTimeout),
    '--max-inflight', String(o.maxInflight), ...(o.tokenFile ? ['--token-file', resolvePath(o.tokenFile)] : [])];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd, 'ipc'], env: process.env });
  closeSync(fd);
  const result = await new Promise<{ ready?: DeviceState; error?: string; exitCode?: number }>((resolve) => {
    child.once('message', (m) => resolve(m as { ready?: DeviceState }));
    child.once('exit', (code) => {
      const tail = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-3).join('\n') : '';
      resolve({ error: `the daemon exited (code ${code}) before the device was ready${tail ? ':\n' + tail : ''}`, exitCode: EXIT.FAILURE });
    });
  });
  if (!result.ready) {
    removeDeviceFiles(dir, id);
    throw new CliError(result.error ?? 'the daemon failed', result.exitCode ?? EXIT.FAILURE);
  }
  child.unref();
  child.disconnect();
  process.stdout.write(result.ready.device + '\n');
}
