import { logger, readTokenFile } from '@wsblk/shared';
import { closeSync, existsSync, openSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { Command, Option } from 'commander';
import { ublkAvailable } from '@wsblk/native';
import { newSecret, type TargetSpec } from '../target-spec.js';
import { ConnectError } from '../transport/connection.js';
import { parseUrl, splitCredentials, withPort } from '../transport/url.js';
import { Daemon } from '../daemon/daemon.js';
import type { FrontendFactory } from '../daemon/frontend.js';
import { nbdFrontend, ublkFrontend } from '../daemon/frontends.js';
import { printProgress, relayReady, spawnWsblk, supervise, waitReady, type ReadyMessage } from '../daemon/launch.js';
import { claimId, logPath, removeDeviceFiles, runDir, type DeviceState } from '../daemon/rundir.js';
import { CliError, EXIT } from './errors.js';
import { blockSizeArg, intArg, listenArg, secondsArg, sizeArg } from './options.js';

const log = logger('connect');

export interface ConnectOptions {
  nbd?: string;
  tokenFile?: string;
  compress: 'lz4' | 'none';
  foreground?: boolean;
  ioTimeout: number;
  connectTimeout: number;
  maxInflight: number;
  queues: number;
  depth: number;
  maxIo: number;
  blockSize: 512 | 4096;
  supervise: boolean;
  readOnly?: boolean;
  steal?: boolean;
  failfastTimeout: number;
  minInSync: number;
  onNoQuorum: 'wait' | 'error';
  replicaTimeout: number;
  resyncRate: number;
  forceInSync?: string;
  assumeClean?: boolean;
  metricsListen?: { host: string; port: number };
  /** Other gateways of the same export, in the order they are tried. */
  failover: string[];
  /** Hidden: set by the parent of a background daemon or by the supervisor. */
  id?: string;
  readyIpc?: boolean;
  supervised?: boolean;
}

export function connectCommand(): Command {
  return new Command('connect')
    .summary('attach a remote export as a local device')
    .description('Attach a remote export as a local device and print it on stdout once it is ready: '
      + 'a ublk block device (/dev/ublkbN; needs root and ublk_drv), or with --nbd an NBD URI '
      + '(nbd+unix:///?socket=...). The device is served by a daemon that keeps running in the '
      + 'background; its log is in the run directory ($WSBLK_RUN_DIR, /run/wsblk for root, else '
      + '$XDG_RUNTIME_DIR/wsblk). --foreground keeps it in this process (for systemd). The token '
      + 'comes from --token-file or $WSBLK_TOKEN. A lost connection is retried forever and '
      + 'outstanding requests are replayed, unless --io-timeout says otherwise. A ublk device is '
      + 'supervised: if its daemon dies (even by SIGKILL), a new one recovers the device and the '
      + 'kernel re-sends what was in flight; --no-supervise leaves that to `wsblk recover`. '
      + 'An export has one writer: a second read-write connect is refused (exit 3) unless --steal, '
      + 'which fences the current writer; --read-only attaches beside it.\n\n'
      + 'Several URLs, comma-separated, make one device over a replica set: writes go to every '
      + 'in-sync replica, reads to one; a replica that fails or stays silent for --replica-timeout is '
      + 'ejected (the new membership is stored on the others first) and, once back, resynced from '
      + 'the regions written while it was out (or not yet flushed when it left). Every replica must have the same size.\n\n'
      + '--failover URL2 (repeatable) names another gateway of the same data, e.g. a second `wsblk serve` '
      + 'in front of the same Ceph RBD image: nothing is written to it while URL works. When the '
      + 'connection is lost, each retry round tries the gateway the device is on, then the others in '
      + 'the order given (URL first), and the first that answers takes over: it opens a new session and '
      + 'the outstanding requests are replayed there. The device stays there (no fail-back). Not a replica '
      + 'set: the data is written once, and what fences a stale gateway is the store (RBD\'s exclusive lock).')
    .argument('<url>', 'ws://HOST[:PORT]/EXPORT or wss://... (port 7690 by default); ws://:TOKEN@HOST/EXPORT gives the token; URL1,URL2,... a replica set')
    .option('--nbd <socket>', 'serve the export as NBD on this Unix socket instead of a ublk device')
    .option('--token-file <file>', 'file whose first line is the bearer token')
    .addOption(new Option('--compress <algo>', 'compress payloads where it pays').choices(['lz4', 'none']).default('none'))
    .option('--foreground', 'run the daemon in this process; stop with SIGTERM or SIGINT')
    .option('--read-only', 'attach read-only (beside the export\'s writer, if any); the device is read-only')
    .option('--steal', 'take the export over from its current writer (the server fences it first)')
    .option('--io-timeout <seconds>', 'fail I/O with EIO after this long without an answer (0 = wait forever)', secondsArg, 0)
    .option('--connect-timeout <seconds>', 'give up the first connect after this long', secondsArg, 30)
    .option('--max-inflight <size>', 'bytes of requests on the wire at once', sizeArg, 64 << 20)
    .option('--queues <n>', 'ublk: hardware queues (default: min(cores, 4))', intArg(1, 64), Math.min(availableParallelism(), 4))
    .option('--depth <n>', 'ublk: tags per queue', intArg(1, 4096), 128)
    .option('--max-io <size>', 'ublk: largest request (a multiple of 4K)', sizeArg, 1 << 20)
    .addOption(new Option('--block-size <bytes>', 'ublk: logical block size, 512 or 4096').default(512).argParser(blockSizeArg))
    .option('--no-supervise', 'ublk: no supervisor; recover a killed daemon with `wsblk recover`')
    .option('--failfast-timeout <seconds>', 'ublk: fail a request the kernel marks failfast (md raid members, readahead) with EIO after this long without an answer (0: wait like any other)', secondsArg, 5)
    .option('--min-in-sync <n>', 'replica set: writes need this many in-sync replicas', intArg(1, 32), 1)
    .addOption(new Option('--on-no-quorum <mode>', 'replica set: with fewer in-sync replicas, writes wait, or fail with EIO').choices(['wait', 'error']).default('wait'))
    .option('--replica-timeout <seconds>', 'replica set: eject a replica that leaves a request unanswered this long (the last in-sync one is never ejected)', secondsArg, 8)
    .option('--resync-rate <size>', 'replica set: copy at most this much per second while resyncing (0: no limit)', sizeArg, 100 << 20)
    .option('--force-in-sync <url>', 'replica set: trust this replica when the records cannot tell which are in sync (writes the others had and it missed are lost)')
    .option('--assume-clean', 'replica set: a new set whose exports are identical already (new, all zeroes): every replica in sync at once, nothing compared (as mdadm --assume-clean; `wsblk verify` checks it)')
    .option('--failover <url>', 'another gateway of the same data, tried in order when the connection is lost (repeatable; not with URL1,URL2,...)', collect, [])
    .option('--metrics-listen <host:port>', 'serve the device\'s metrics as Prometheus text at http://HOST:PORT/metrics (also `wsblk stats`)', listenArg)
    .addOption(new Option('--id <id>').hideHelp())
    .addOption(new Option('--ready-ipc').hideHelp())
    .addOption(new Option('--supervised').hideHelp())
    .action(async (text: string, o: ConnectOptions) => {
      // A token in the URL is used, and the URL is kept (argv, logs, state) without it.
      const parts = text.split(',').map((u) => u.trim()).filter((u) => u !== '');
      let urls: string[];
      const tokens = new Set<string>();
      try {
        urls = parts.map((p) => {
          const plain = splitCredentials(p);
          if (plain.token !== undefined) tokens.add(plain.token);
          return withPort(parseUrl(plain.url));
        });
      } catch (e) {
        throw new CliError((e as Error).message, EXIT.USAGE);
      }
      if (urls.length === 0) throw new CliError('no URL given', EXIT.USAGE);
      if (o.failover.length > 0 && urls.length > 1) {
        throw new CliError('--failover names other gateways of one export; a replica set (URL1,URL2,...) has no failover gateways', EXIT.USAGE);
      }
      try {
        o.failover = o.failover.map((f) => {
          const plain = splitCredentials(f);
          if (plain.token !== undefined) tokens.add(plain.token);
          return withPort(parseUrl(plain.url));
        });
      } catch (e) {
        throw new CliError(`--failover: ${(e as Error).message}`, EXIT.USAGE);
      }
      const again = [...urls, ...o.failover].find((u, i, all) => all.indexOf(u) !== i);
      if (again && o.failover.length > 0) throw new CliError(`${again} is given twice`, EXIT.USAGE);
      if (tokens.size > 1 && o.failover.length > 0) throw new CliError('the URLs carry different tokens: the gateways of a device use one token', EXIT.USAGE);
      const dup = urls.find((u, i) => urls.indexOf(u) !== i);
      if (dup) throw new CliError(`${dup} is given twice`, EXIT.USAGE);
      if (tokens.size > 1) throw new CliError('the URLs carry different tokens: a replica set uses one token for every replica', EXIT.USAGE);
      if (urls.length === 1 && (o.forceInSync || o.minInSync > 1 || o.assumeClean)) throw new CliError('--min-in-sync, --force-in-sync and --assume-clean are for a replica set (URL1,URL2,...)', EXIT.USAGE);
      if (o.assumeClean && o.forceInSync) throw new CliError('--assume-clean (a new set) and --force-in-sync (an existing one) do not go together', EXIT.USAGE);
      if (o.minInSync > urls.length) throw new CliError(`--min-in-sync ${o.minInSync} is more than the ${urls.length} replicas`, EXIT.USAGE);
      if (o.forceInSync !== undefined) {
        try {
          o.forceInSync = withPort(parseUrl(splitCredentials(o.forceInSync).url));
        } catch (e) {
          throw new CliError(`--force-in-sync: ${(e as Error).message}`, EXIT.USAGE);
        }
        if (!urls.includes(o.forceInSync)) throw new CliError(`--force-in-sync ${o.forceInSync} is not one of the replicas`, EXIT.USAGE);
      }
      if (o.replicaTimeout <= 0) throw new CliError('--replica-timeout must be more than 0 seconds', EXIT.USAGE);
      const url = urls.join(',');
      const plain = { token: [...tokens][0] };
      if (plain.token !== undefined) {
        if (o.tokenFile) throw new CliError('the URL carries a token and --token-file gives one: give it once', EXIT.USAGE);
        // Children (supervisor, daemon) get it through their environment, never their argv.
        process.env.WSBLK_TOKEN = plain.token;
      }
      if (o.readOnly && o.steal) throw new CliError('--steal takes over the writer: it makes no sense with --read-only', EXIT.USAGE);
      if (o.maxIo % 4096 !== 0 || o.maxIo < 4096 || o.maxIo > 32 << 20) {
        throw new CliError(`--max-io must be a multiple of 4K from 4K to 32M, got ${o.maxIo}`, EXIT.USAGE);
      }
      if (o.tokenFile) {
        o.tokenFile = resolvePath(o.tokenFile);
        readTokenFile(o.tokenFile); // fail now, not in the daemon
      }
      if (o.nbd) {
        o.nbd = resolvePath(o.nbd);
      } else {
        const u = ublkAvailable();
        if (!u.ok) throw new CliError(`${u.reason}; use --nbd SOCKET to serve the export over NBD instead`, EXIT.FAILURE);
      }
      const kind = o.nbd ? 'nbd' : 'ublk';
      if (!o.foreground) return runBackground(url, o, kind);
      if (kind === 'ublk' && o.supervise && !o.supervised) return runSupervisor(url, o);
      return runDaemon(connectDaemonOptions(url, o, kind), o);
    });
}

/** commander's accumulator for a repeatable option. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The arguments that reproduce this connect in a child process. */
function childArgs(url: string, o: ConnectOptions, id: string): string[] {
  return ['connect', url, '--foreground', '--ready-ipc', '--id', id,
    '--compress', o.compress, '--io-timeout', String(o.ioTimeout), '--connect-timeout', String(o.connectTimeout),
    '--max-inflight', String(o.maxInflight), '--queues', String(o.queues), '--depth', String(o.depth),
    '--max-io', String(o.maxIo), '--block-size', String(o.blockSize),
    ...(o.nbd ? ['--nbd', o.nbd] : []), ...(o.tokenFile ? ['--token-file', o.tokenFile] : []),
    ...(o.supervise ? [] : ['--no-supervise']), ...(o.readOnly ? ['--read-only'] : []), ...(o.steal ? ['--steal'] : []),
    '--failfast-timeout', String(o.failfastTimeout), '--min-in-sync', String(o.minInSync), '--on-no-quorum', o.onNoQuorum, '--replica-timeout', String(o.replicaTimeout),
    '--resync-rate', String(o.resyncRate), ...(o.forceInSync ? ['--force-in-sync', o.forceInSync] : []), ...(o.assumeClean ? ['--assume-clean'] : []),
    ...o.failover.flatMap((f) => ['--failover', f]),
    ...(o.metricsListen ? ['--metrics-listen', `${o.metricsListen.host.includes(':') ? `[${o.metricsListen.host}]` : o.metricsListen.host}:${o.metricsListen.port}`] : [])];
}

/** Claims a device id: nbdN, or ublkN where /dev/ublkcN is free too (N becomes the kernel id). */
function claimDeviceId(dir: string, kind: 'nbd' | 'ublk'): string {
  for (;;) {
    const id = claimId(dir, kind);
    if (kind === 'nbd' || !existsSync(`/dev/ublkc${id.slice(4)}`)) return id;
    // Taken by a device we do not know (another tool): keep the placeholder out of the way.
    removeDeviceFiles(dir, id);
    throw new CliError(`ublk device id ${id.slice(4)} is taken by a device wsblk does not know (see /dev/ublkc*)`);
  }
}

export function connectDaemonOptions(url: string, o: ConnectOptions, kind: 'nbd' | 'ublk'): ConstructorParameters<typeof Daemon>[0] {
  const id = o.id ?? claimDeviceId(runDir(), kind);
  const urls = url.split(',');
  const first = urls[0]!;
  const target: TargetSpec = {
    url: first, export: decodeURIComponent(new URL(first).pathname.replace(/^\/+/, '')),
    token: o.tokenFile ? { file: o.tokenFile } : process.env.WSBLK_TOKEN ? { env: 'WSBLK_TOKEN' } : 'none',
    sessionId: '', secret: newSecret(), compress: o.compress, connectTimeoutMs: o.connectTimeout * 1000,
    ioTimeoutMs: o.ioTimeout * 1000, maxInflightBytes: o.maxInflight, readOnly: o.readOnly === true,
    ...(o.failover.length > 0 ? { failover: o.failover } : {}),
    ...(urls.length > 1 ? {
      set: {
        replicas: urls.map((u) => ({ url: u, sessionId: '' })), minInSync: o.minInSync, onNoQuorum: o.onNoQuorum,
        replicaTimeoutMs: o.replicaTimeout * 1000, resyncRate: o.resyncRate, ...(o.forceInSync ? { forceInSync: o.forceInSync } : {}),
        ...(o.assumeClean ? { assumeClean: true } : {}),
      },
    } : {}),
  };
  const frontend: FrontendFactory = kind === 'nbd'
    ? nbdFrontend(o.nbd!)
    : ublkFrontend({ id: Number(id.slice(4)), queues: o.queues, depth: o.depth, maxIoBytes: o.maxIo, blockSize: o.blockSize, failfastMs: o.failfastTimeout * 1000 });
  return {
    id, kind, target, frontend, ...(o.steal ? { steal: true } : {}), ...(o.metricsListen ? { metricsListen: o.metricsListen } : {}),
    recorded: {
      queues: o.queues, depth: o.depth, maxIo: o.maxIo, blockSize: o.blockSize, supervise: o.supervise, nbd: o.nbd,
      failfastMs: o.failfastTimeout * 1000, ...(o.metricsListen ? { metricsListen: o.metricsListen } : {}),
    },
    extraState: {
      ...(kind === 'nbd' ? { socket: o.nbd } : { devId: Number(id.slice(4)) }),
      ...(o.supervised ? { supervisorPid: process.ppid } : {}),
    },
  };
}

/** Runs a daemon in this process until it is disconnected; reports readiness. */
export async function runDaemon(opts: ConstructorParameters<typeof Daemon>[0], o: { readyIpc?: boolean }): Promise<void> {
  const daemon = new Daemon({ ...opts, onWait: (line) => waitNote(line, o) });
  let state: DeviceState;
  try {
    state = await daemon.start();
  } catch (e) {
    const code = e instanceof ConnectError ? EXIT.CONNECT : EXIT.FAILURE;
    if (o.readyIpc && process.send) process.send({ error: (e as Error).message, exitCode: code } satisfies ReadyMessage);
    throw new CliError((e as Error).message, code);
  }
  if (o.readyIpc && process.send) {
    process.send({ ready: state } satisfies ReadyMessage);
    process.disconnect?.();
  } else {
    process.stdout.write(state.device + '\n');
  }
  const code = await daemon.done;
  // Let the control socket's answer to `disconnect` leave before exiting.
  setTimeout(() => process.exit(code), 100);
}

/** A line for the person waiting on a connect: in the log (stderr), and to the parent that has their terminal. */
function waitNote(line: string, o: { readyIpc?: boolean }): void {
  log.warn(line);
  if (o.readyIpc && process.send) process.send({ progress: line } satisfies ReadyMessage);
}

/** The supervisor: this process watches the daemon and recovers the device if it dies. */
async function runSupervisor(url: string, o: ConnectOptions): Promise<void> {
  const dir = runDir();
  const id = o.id ?? claimDeviceId(dir, 'ublk');
  const code = await supervise({
    id, dir,
    startArgs: [...childArgs(url, { ...o, supervise: true }, id), '--supervised'],
    recoverArgs: ['recover', id, '--foreground', '--ready-ipc', '--supervised'],
    report: (m) => {
      relayReady(m, o.readyIpc);
      if (m.error !== undefined) throw new CliError(m.error ?? 'the daemon failed', m.exitCode ?? EXIT.FAILURE);
    },
  });
  process.exit(code);
}

/** Starts the daemon (or its supervisor) detached, and waits until it says ready (or why not). */
async function runBackground(url: string, o: ConnectOptions, kind: 'nbd' | 'ublk'): Promise<void> {
  const dir = runDir();
  const id = claimDeviceId(dir, kind);
  const logFile = logPath(dir, id);
  const fd = openSync(logFile, 'a', 0o600);
  // The supervisor (ublk) stays in the host's namespace; the daemon it starts gets its own.
  const child = spawnWsblk(childArgs(url, o, id), fd, { detached: true, ownNamespace: kind === 'ublk' && !o.supervise });
  closeSync(fd);
  const result = await waitReady(child, logFile, printProgress);
  if (!result.ready) {
    removeDeviceFiles(dir, id);
    throw new CliError(result.error ?? 'the daemon failed', result.exitCode ?? EXIT.FAILURE);
  }
  child.unref();
  child.disconnect();
  process.stdout.write(result.ready.device + '\n');
}
