// Starting daemons: detached in the background, in their own mount namespace, under a
// supervisor that recovers a ublk device when its daemon dies.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { logger } from '@wsblk/shared';
import { statePath, type DeviceState } from './rundir.js';
import { OWN_MOUNT_NS_ENV } from './mount-namespace.js';

const log = logger('supervisor');
const MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** What a starting daemon tells its parent over IPC. */
export interface ReadyMessage {
  ready?: DeviceState;
  error?: string;
  exitCode?: number;
  /** Not ready yet: a line for the person waiting (the first connect keeps failing). */
  progress?: string;
}

let unshareOk: boolean | undefined;

/**
 * The command line of a wsblk child process. A daemon that serves a ublk device runs in a
 * private mount namespace, so a filesystem mounted on its own device is never in its way
 * (no deadlock on exit); that needs root and unshare(1).
 */
export function wsblkCommand(args: string[], ownNamespace: boolean): [string, string[]] {
  if (ownNamespace && process.getuid?.() === 0) {
    unshareOk ??= spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status === 0;
    if (unshareOk) return ['unshare', ['--mount', '--propagation', 'private', '--', process.execPath, MAIN, ...args]];
  }
  return [process.execPath, [MAIN, ...args]];
}

/** Spawns a wsblk child with its output on `out` (a log fd, or 'inherit') and an IPC channel. */
export function spawnWsblk(args: string[], out: number | 'inherit', opts: { detached: boolean; ownNamespace: boolean }): ChildProcess {
  const [cmd, argv] = wsblkCommand(args, opts.ownNamespace);
  // The daemon learns that the namespace is its own (mount-namespace.ts); nobody else inherits it.
  const env = { ...process.env };
  if (cmd === 'unshare') env[OWN_MOUNT_NS_ENV] = '1';
  else delete env[OWN_MOUNT_NS_ENV];
  return spawn(cmd, argv, { detached: opts.detached, stdio: ['ignore', out, out, 'ipc'], env });
}

/** Resolves with the child's ready (or error) message, or why it exited without one; progress lines go to onProgress. */
export function waitReady(child: ChildProcess, logFile?: string, onProgress?: (line: string) => void): Promise<ReadyMessage> {
  return new Promise((resolve) => {
    const onMessage = (m: ReadyMessage) => {
      if (m.progress !== undefined && !m.ready && !m.error) return onProgress?.(m.progress);
      cleanup();
      resolve(m);
    };
    const onExit = (code: number | null, sig: NodeJS.Signals | null) => {
      cleanup();
      const tail = logFile && existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').slice(-3).join('\n') : '';
      resolve({ error: `the daemon exited (${sig ?? `code ${code}`}) before the device was ready${tail ? ':\n' + tail : ''}`, exitCode: 1 });
    };
    const cleanup = () => { child.off('message', onMessage); child.off('exit', onExit); };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/**
 * Passes a daemon's message on: over IPC to the process that started this one (a supervisor's
 * parent), else to the terminal (the device on stdout, a progress line on stderr).
 */
export function relayReady(m: ReadyMessage, readyIpc: boolean | undefined): void {
  if (readyIpc && process.send) {
    process.send(m);
    if (m.ready) process.disconnect?.();
  } else if (m.ready) {
    process.stdout.write(m.ready.device + '\n');
  } else if (m.progress !== undefined) {
    printProgress(m.progress);
  }
}

/** A progress line on the terminal of the person waiting. */
export function printProgress(line: string): void {
  process.stderr.write(`wsblk: ${line}\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs in the supervisor process: starts the daemon, reports ready through `report`, and while
 * the device exists restarts a daemon that died (SIGKILL, crash) in recovery mode. Returns the
 * exit code for the supervisor when the device is gone (disconnect) or recovery gave up.
 */
export async function supervise(opts: {
  id: string;
  dir: string;
  startArgs: string[];
  recoverArgs: string[];
  report: (m: ReadyMessage) => void;
}): Promise<number> {
  let child = spawnWsblk(opts.startArgs, 'inherit', { detached: false, ownNamespace: true });
  const first = await waitReady(child, undefined, (line) => opts.report({ progress: line }));
  opts.report(first);
  if (!first.ready) return first.exitCode ?? 1;
  let stopping = false;
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(sig, () => { stopping = true; child.kill('SIGTERM'); });
  }
  let failures = 0;
  for (;;) {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => {
      if (child.exitCode !== null || child.signalCode !== null) r([child.exitCode, child.signalCode]);
      else child.once('exit', (c, s) => r([c, s]));
    });
    if (stopping) return code ?? 0;
    if (!existsSync(statePath(opts.dir, opts.id))) return code ?? 0; // disconnected
    if (code === 0) return 0;
    log.warn(`${opts.id}: daemon ${child.pid} died (${signal ?? `exit ${code}`}); recovering the device`);
    for (;;) {
      child = spawnWsblk(opts.recoverArgs, 'inherit', { detached: false, ownNamespace: true });
      const r = await waitReady(child);
      if (r.ready) {
        log.info(`${opts.id}: recovered by daemon ${child.pid}`);
        failures = 0;
        break;
      }
      if (++failures >= 5 || stopping) {
        log.error(`${opts.id}: recovery failed ${failures} times, giving up: ${r.error}`);
        return 1;
      }
      log.warn(`${opts.id}: recovery failed (${r.error}); retrying`);
      await sleep(1000 * failures);
    }
  }
}
