// The lab's device: a `wsblk connect URL1,URL2,... --nbd SOCK --foreground` daemon over the
// scenario's servers, with the scenario's replica-set options, in a run directory of its own.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlPath, listStates } from '../daemon/rundir.js';
import type { DeviceSpec } from './scenario.js';
import { WSBLK_BIN, type LabServer } from './servers.js';

export class LabDevice {
  readonly socket: string;
  readonly runDir: string;
  child: ChildProcess | undefined;
  control = '';
  private tail = '';

  /** dir: where its sockets go; logFile: where its output is kept (in the results folder). */
  constructor(private readonly spec: DeviceSpec, private readonly servers: LabServer[], dir: string, private readonly logFile: string) {
    this.socket = join(dir, 'nbd.sock');
    this.runDir = join(dir, 'run');
  }

  get uri(): string {
    return `nbd+unix:///?socket=${this.socket}`;
  }

  /** The arguments of the connect, as the scenario's device asks. */
  args(): string[] {
    const d = this.spec;
    return ['connect', this.servers.map((s) => s.tokenUrl).join(','), '--nbd', this.socket, '--foreground',
      '--min-in-sync', String(d.minInSync), '--on-no-quorum', d.onNoQuorum, '--replica-timeout', String(d.replicaTimeoutS),
      ...(d.resyncRate !== undefined ? ['--resync-rate', String(d.resyncRate)] : []),
      ...(d.ioTimeoutS !== undefined ? ['--io-timeout', String(d.ioTimeoutS)] : [])];
  }

  /** Starts the daemon; resolves once it serves the socket and answers on its control socket. */
  async start(): Promise<void> {
    const child = spawn(process.execPath, [WSBLK_BIN, ...this.args()], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WSBLK_RUN_DIR: this.runDir },
    });
    this.child = child;
    const keep = (d: string) => {
      this.tail = (this.tail + d).slice(-8000);
      appendFileSync(this.logFile, d);
    };
    child.stdout!.setEncoding('utf8').on('data', keep);
    child.stderr!.setEncoding('utf8').on('data', keep);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the device's daemon exited (${child.exitCode ?? child.signalCode}): ${this.lastLines()}`);
      if (Date.now() > deadline) throw new Error(`the device did not come up within 60 s: ${this.lastLines()}`);
      const state = this.tail.includes('nbd+unix://') ? listStates(this.runDir)[0] : undefined;
      if (state) {
        this.control = controlPath(this.runDir, state.id);
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  lastLines(n = 3): string {
    return this.tail.trim().split('\n').slice(-n).join(' | ');
  }

  /** SIGTERM (outstanding requests finish, then FLUSH); SIGKILL after timeoutMs. */
  async stop(timeoutMs = 15_000): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await gone;
    clearTimeout(timer);
  }
}
