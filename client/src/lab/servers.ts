// The lab's storage servers: `wsblk serve` child processes, one export `d` each, with an admin
// listener, started on 127.0.0.1 port 0 the first time and on the same ports after a kill, so
// the replica set's URLs stay valid. File exports live in the run folder and keep their data
// across a restart; memory exports come back empty (the set then compares them in full).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServerSpec } from './scenario.js';

/** The CLI entry point, run by the same node as this process. */
export const WSBLK_BIN = fileURLToPath(new URL('../../bin/wsblk.js', import.meta.url));
export const EXPORT_NAME = 'd';

/** One `wsblk serve` of the run. */
export class LabServer {
  child: ChildProcess | undefined;
  port = 0;
  adminPort = 0;
  /** The last lines of its stderr, for an error message. */
  private tail = '';

  constructor(readonly spec: ServerSpec, private readonly folder: string, private readonly scratch: string, private readonly scenarioDir: string,
    readonly token: string, private readonly adminToken: string) {}

  get name(): string {
    return this.spec.name;
  }

  /** The export's URL without its token (as the daemon and the results show it). */
  get url(): string {
    return `ws://127.0.0.1:${this.port}/${EXPORT_NAME}`;
  }

  get tokenUrl(): string {
    return `ws://:${this.token}@127.0.0.1:${this.port}/${EXPORT_NAME}`;
  }

  get admin(): string {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts it (again); resolves once both listeners are up. */
  async start(): Promise<void> {
    const exp = this.spec.export;
    const store = exp.kind === 'memory' ? `memory:${exp.size}` : `file:${join(this.folder, `${this.name}.img`)},size=${exp.size}`;
    const tokenFile = join(this.scratch, `${this.name}.admin-token`);
    writeFileSync(tokenFile, `${this.adminToken}\n`, { mode: 0o600 });
    const args = [WSBLK_BIN, 'serve', '--listen', `127.0.0.1:${this.port}`, '--export', `${EXPORT_NAME}=${store}`,
      '--admin-listen', `127.0.0.1:${this.adminPort}`, '--admin-token-file', tokenFile];
    if (this.spec.faults) args.push('--faults', resolve(this.scenarioDir, this.spec.faults));
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, WSBLK_TOKEN: this.token } });
    this.child = child;
    this.tail = '';
    await new Promise<void>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`server ${this.name} did not listen within 20 s: ${this.lastLines()}`)), 20_000);
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (d: string) => {
        this.tail = (this.tail + d).slice(-4000);
        appendFileSync(join(this.folder, `${this.name}.log`), d);
        const admin = /admin listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(this.tail);
        const data = /listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(this.tail);
        if (admin && data) {
          this.adminPort = Number(admin[1]);
          this.port = Number(data[1]);
          clearTimeout(timer);
          ok();
        }
      });
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        fail(new Error(`server ${this.name} exited (${code ?? sig}) before listening: ${this.lastLines()}`));
      });
    });
  }

  lastLines(): string {
    return this.tail.trim().split('\n').slice(-3).join(' | ');
  }

  /** SIGKILL; resolves once it is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  }

  /** A call on its admin API; throws with the API's one-line error. */
  async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await fetch(this.admin + path, {
      method,
      headers: { authorization: `Bearer ${this.adminToken}`, 'user-agent': 'wsblk lab', ...(body !== undefined && { 'content-type': 'application/json' }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${this.name}: ${method} ${path}: ${res.status} ${(safeJson(text) as { error?: string } | undefined)?.error ?? text.trim()}`);
    return safeJson(text);
  }
}

const safeJson = (text: string): unknown => {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
};

/** Every server of a run, with one generated data token and one admin token. */
export class LabServers {
  readonly list: LabServer[];

  /** folder: the results folder (file exports); scratch: a private folder for the token files. */
  constructor(specs: ServerSpec[], folder: string, scratch: string, scenarioFile: string) {
    const token = randomBytes(16).toString('hex');
    const adminToken = randomBytes(16).toString('hex');
    this.list = specs.map((s) => new LabServer(s, folder, scratch, dirname(resolve(scenarioFile)), s.token ?? token, adminToken));
  }

  get(name: string): LabServer {
    const s = this.list.find((x) => x.name === name);
    if (!s) throw new Error(`no server '${name}'`);
    return s;
  }

  /** The server whose data port a URL names. */
  byUrl(url: string): LabServer | undefined {
    const port = Number(/:(\d+)\//.exec(url)?.[1]);
    return this.list.find((s) => s.port === port);
  }

  startAll(): Promise<void> {
    return Promise.all(this.list.map((s) => s.start())).then(() => undefined);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.list.map((s) => s.kill()));
  }
}
