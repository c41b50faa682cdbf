// A lab scenario: one experiment described in a file (YAML or JSON), read into a typed plan with
// every default filled, or refused with one line per mistake so a person can fix them all at once.
//
// The format (times in seconds as plain numbers, sizes as "64M" or a byte count):
//
//   name: kill-and-resync              # required; letters, digits, '.', '_' and '-' (names the results folder)
//   description: ...                   # optional, shown in the report
//   duration: 40                       # required: seconds the run lasts
//   sampleInterval: 1                  # optional: seconds between metric samples (default 1)
//   servers:                           # required: one or more
//     - name: s1                       # required, unique; letters, digits, '_' and '-'
//       export: memory:64M             # required: memory:SIZE, or file:SIZE (a file in the run's folder)
//       token: secret                  # optional: the server's token (default: the runner makes one)
//       faults: slow-disk.json         # optional: faults file set at start (serve --faults), relative to the scenario
//   device:                            # optional as a whole
//     servers: [s1, s2, s3]            # replicas (default: every server, in order); exports of one size
//     frontend: nbd                    # nbd (default, any machine) or ublk
//     minInSync: 2                     # in-sync replicas a write needs (default 1, as connect --min-in-sync)
//     onNoQuorum: wait                 # wait (default) or error, when fewer than minInSync are in sync
//     replicaTimeout: 5                # seconds before a silent replica is ejected (default 8, as connect)
//     resyncRate: 50M/s                # optional cap on resync traffic, SIZE or SIZE/s
//     ioTimeout: 30                    # optional: seconds before a request fails with EIO (0 = never)
//   workload:                          # required
//     kind: fio                        # fio (default) or fs
//     rw: randwrite                    # fio's rw: write, randwrite, rw, randrw, read, randread (default randwrite)
//     bs: 4K                           # block size (default 4K)
//     iodepth: 16                      # default 16
//     size: 32M                        # bytes of the device used (default: the whole device)
//     runtime: 30                      # seconds of I/O (default: duration), at most duration
//     verify: crc32c                   # crc32c (default), md5, sha256 or none
//   # or, the filesystem workload: mkfs.ext4 on the device, mount it, write `files` files of
//   # `fileSize` random bytes (fsync each when fsync is true) in a loop until `runtime`, then
//   # unmount, fsck and read every fsynced file back against its checksum. Needs root.
//   #   workload: { kind: fs, files: 64, fileSize: 256K, fsync: true, runtime: 30 }
//   schedule:                          # optional: timed actions, listed in time order
//     - { at: 10, action: kill, server: s2 }
//     - { at: 25, action: restart, server: s2 }
//     - { at: 12, action: slow, server: s1, delayMs: 50, jitterMs: 10, for: 5 }
//
// Actions, each on one server:
//   kill, crash (silenced, its unflushed writes discarded, then killed), restart (after kill or crash);
//   blackhole / heal (connections stay open, nothing is answered); partition / unpartition
//   (a real one, nftables dropping the server's packets on loopback, where the runner may make
//   it: nft and CAP_NET_ADMIN; else a black hole);
//   slow (delayMs, jitterMs); pause / resume (all I/O held); clear (every fault off).
//   blackhole, partition, slow and pause take `for: SECONDS` to end by themselves.
import { basename } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseSize } from '@wsblk/shared';

export interface ServerSpec {
  name: string;
  export: { kind: 'memory' | 'file'; size: number };
  token?: string;
  /** A faults file for `serve --faults`, as written (relative to the scenario's folder). */
  faults?: string;
}

export interface DeviceSpec {
  servers: string[];
  frontend: 'nbd' | 'ublk';
  minInSync: number;
  onNoQuorum: 'wait' | 'error';
  replicaTimeoutS: number;
  /** Bytes per second; absent means no cap. */
  resyncRate?: number;
  /** Seconds; absent means the client's default. */
  ioTimeoutS?: number;
}

export const FIO_RW = ['write', 'randwrite', 'rw', 'randrw', 'read', 'randread'] as const;
export const FIO_VERIFY = ['crc32c', 'md5', 'sha256', 'none'] as const;

export interface FioWorkload {
  kind: 'fio';
  rw: (typeof FIO_RW)[number];
  bs: number;
  iodepth: number;
  size: number;
  runtimeS: number;
  verify: (typeof FIO_VERIFY)[number];
}

export interface FsWorkload {
  kind: 'fs';
  files: number;
  fileSize: number;
  fsync: boolean;
  runtimeS: number;
}

export type Workload = FioWorkload | FsWorkload;

export const ACTIONS = [
  'kill', 'restart', 'blackhole', 'heal', 'slow', 'pause', 'resume', 'crash', 'partition', 'unpartition', 'clear',
] as const;
export type ActionName = (typeof ACTIONS)[number];

export interface ScheduledAction {
  atS: number;
  action: ActionName;
  server: string;
  /** For slow. */
  delayMs?: number;
  jitterMs?: number;
  /** For blackhole, partition, slow and pause: seconds until the runner undoes it. */
  forS?: number;
}

export interface Scenario {
  name: string;
  description?: string;
  /** The file name as given to parseScenario. */
  file: string;
  durationS: number;
  sampleIntervalS: number;
  servers: ServerSpec[];
  device: DeviceSpec;
  workload: Workload;
  /** In time order. */
  schedule: ScheduledAction[];
}

/** Every mistake in a scenario file, one line each; message holds them all. */
export class ScenarioError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ScenarioError';
  }
}

// Keys each action takes beyond at, action and server.
const ACTION_PARAMS: Record<ActionName, readonly string[]> = {
  kill: [], crash: [], restart: [], heal: [], unpartition: [], resume: [], clear: [],
  blackhole: ['for'], partition: ['for'], pause: ['for'], slow: ['delayMs', 'jitterMs', 'for'],
};
// What undoes a lasting action, for the ordering checks.
const UNDO = { blackhole: 'heal', partition: 'unpartition', pause: 'resume', slow: 'clear' } as const;
type Lasting = keyof typeof UNDO;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
const SCENARIO_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : JSON.stringify(v) ?? String(v));

/** Reads a scenario file's text; fileName only names it in messages. Throws ScenarioError. */
export function parseScenario(text: string, fileName: string): Scenario {
  const label = basename(fileName);
  const problems: string[] = [];
  const bad = (where: string, what: string): void => void problems.push(`scenario ${label}: ${where}: ${what}`);

  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    const first = String((e as Error).message).split('\n')[0]!.replace(/:\s*$/, '');
    throw new ScenarioError([`scenario ${label}: not valid YAML or JSON: ${first}`]);
  }
  if (!isObj(doc)) throw new ScenarioError([`scenario ${label}: expected a mapping at the top (name, servers, workload, ...)`]);

  const read = new Reader(bad);
  read.onlyKeys('', doc, ['name', 'description', 'duration', 'sampleInterval', 'servers', 'device', 'workload', 'schedule']);
  const name = read.string('name', doc.name, { required: true, pattern: SCENARIO_NAME_RE, patternText: "letters, digits, '.', '_' and '-'" }) ?? '';
  const description = read.string('description', doc.description);
  const durationS = read.number('duration', doc.duration, { required: true, min: 0, minExclusive: true }) ?? 0;
  const sampleIntervalS = read.number('sampleInterval', doc.sampleInterval, { min: 0, minExclusive: true }) ?? 1;
  if (durationS > 0 && sampleIntervalS > durationS) bad('sampleInterval', `${sampleIntervalS} s is longer than the run (duration ${durationS} s)`);

  const servers = readServers(read, doc.servers);
  const serverNames = servers.map((s) => s.name);
  const device = readDevice(read, doc.device, servers);
  const deviceSize = servers.find((s) => s.name === device.servers[0])?.export.size ?? 0;
  const workload = readWorkload(read, doc.workload, durationS, deviceSize);
  const schedule = readSchedule(read, doc.schedule, serverNames, durationS);

  if (problems.length > 0) throw new ScenarioError(problems);
  return { name, ...(description !== undefined && { description }), file: fileName, durationS, sampleIntervalS, servers, device, workload, schedule };
}

function readServers(read: Reader, value: unknown): ServerSpec[] {
  if (value === undefined) return read.fail('servers', 'required: a list of servers, e.g. [{ name: s1, export: memory:64M }]'), [];
  if (!Array.isArray(value) || value.length === 0) return read.fail('servers', 'expected a list of one or more servers'), [];
  const out: ServerSpec[] = [];
  const seen = new Set<string>();
  value.forEach((item, i) => {
    const at = `servers[${i}]`;
    if (!isObj(item)) return read.fail(at, 'expected a mapping with name and export');
    read.onlyKeys(at, item, ['name', 'export', 'token', 'faults']);
    const name = read.string(`${at}.name`, item.name, { required: true, pattern: NAME_RE, patternText: "letters, digits, '_' and '-'" });
    if (name !== undefined && seen.has(name)) read.fail(`${at}.name`, `'${name}' is used by an earlier server`);
    if (name !== undefined) seen.add(name);
    const exp = readExport(read, `${at}.export`, item.export);
    const token = read.string(`${at}.token`, item.token);
    const faults = read.string(`${at}.faults`, item.faults);
    if (name !== undefined && exp) out.push({ name, export: exp, ...(token !== undefined && { token }), ...(faults !== undefined && { faults }) });
  });
  return out;
}

function readExport(read: Reader, at: string, value: unknown): ServerSpec['export'] | undefined {
  const text = read.string(at, value, { required: true });
  if (text === undefined) return undefined;
  const m = /^(memory|file):(.+)$/.exec(text);
  if (!m) return read.fail(at, `expected memory:SIZE or file:SIZE, got '${text}'`), undefined;
  const size = read.size(at, m[2]);
  if (size === undefined) return undefined;
  if (size === 0 || size % 512 !== 0) return read.fail(at, `size ${m[2]} must be a positive multiple of 512 bytes`), undefined;
  return { kind: m[1] as 'memory' | 'file', size };
}

function readDevice(read: Reader, value: unknown, servers: ServerSpec[]): DeviceSpec {
  const all = servers.map((s) => s.name);
  const v: Obj = value === undefined ? {} : isObj(value) ? value : (read.fail('device', 'expected a mapping (servers, frontend, ...)'), {});
  read.onlyKeys('device', v, ['servers', 'frontend', 'minInSync', 'onNoQuorum', 'replicaTimeout', 'resyncRate', 'ioTimeout']);
  let names = all;
  if (v.servers !== undefined) {
    if (!Array.isArray(v.servers) || v.servers.length === 0) {
      read.fail('device.servers', 'expected a list of one or more server names');
    } else {
      names = [];
      v.servers.forEach((n, i) => {
        const at = `device.servers[${i}]`;
        if (typeof n !== 'string') return read.fail(at, `expected a server name, got ${show(n)}`);
        if (!all.includes(n)) return read.fail(at, noServer(n, all));
        if (names.includes(n)) return read.fail(at, `'${n}' is listed twice`);
        names.push(n);
      });
    }
  }
  const sizes = new Set(servers.filter((s) => names.includes(s.name)).map((s) => s.export.size));
  if (sizes.size > 1) read.fail('device.servers', `the replicas' exports differ in size (${names.join(', ')}); give them one size`);
  const frontend = read.oneOf('device.frontend', v.frontend, ['nbd', 'ublk'] as const) ?? 'nbd';
  const minInSync = read.integer('device.minInSync', v.minInSync, { min: 1 }) ?? 1;
  if (minInSync > names.length && names.length > 0) read.fail('device.minInSync', `${minInSync} is more than the ${names.length} replicas`);
  const onNoQuorum = read.oneOf('device.onNoQuorum', v.onNoQuorum, ['wait', 'error'] as const) ?? 'wait';
  const replicaTimeoutS = read.number('device.replicaTimeout', v.replicaTimeout, { min: 0, minExclusive: true }) ?? 8;
  const resyncRate = read.rate('device.resyncRate', v.resyncRate);
  const ioTimeoutS = read.number('device.ioTimeout', v.ioTimeout, { min: 0 });
  return {
    servers: names, frontend, minInSync, onNoQuorum, replicaTimeoutS,
    ...(resyncRate !== undefined && { resyncRate }), ...(ioTimeoutS !== undefined && { ioTimeoutS }),
  };
}

function readWorkload(read: Reader, value: unknown, durationS: number, deviceSize: number): Workload {
  const fallback: Workload = { kind: 'fio', rw: 'randwrite', bs: 4096, iodepth: 16, size: deviceSize, runtimeS: durationS, verify: 'crc32c' };
  if (value === undefined) return read.fail('workload', 'required: e.g. { kind: fio, rw: randwrite, bs: 4K }'), fallback;
  if (!isObj(value)) return read.fail('workload', 'expected a mapping (kind, ...)'), fallback;
  const kind = read.oneOf('workload.kind', value.kind, ['fio', 'fs'] as const) ?? 'fio';
  const runtimeS = read.number('workload.runtime', value.runtime, { min: 0, minExclusive: true }) ?? durationS;
  if (durationS > 0 && runtimeS > durationS) read.fail('workload.runtime', `${runtimeS} s is longer than the run (duration ${durationS} s)`);
  if (kind === 'fs') {
    read.onlyKeys('workload', value, ['kind', 'files', 'fileSize', 'fsync', 'runtime']);
    const files = read.integer('workload.files', value.files, { min: 1 }) ?? 64;
    const fileSize = read.size('workload.fileSize', value.fileSize) ?? 256 * 1024;
    const fsync = read.boolean('workload.fsync', value.fsync) ?? true;
    if (deviceSize > 0 && files * fileSize > deviceSize / 2) {
      read.fail('workload', `${files} files of ${fileSize} bytes need more than half the device (${deviceSize} bytes); ext4 needs room`);
    }
    return { kind, files, fileSize, fsync, runtimeS };
  }
  read.onlyKeys('workload', value, ['kind', 'rw', 'bs', 'iodepth', 'size', 'runtime', 'verify']);
  const rw = read.oneOf('workload.rw', value.rw, FIO_RW) ?? 'randwrite';
  const bs = read.size('workload.bs', value.bs) ?? 4096;
  if (bs === 0 || bs % 512 !== 0) read.fail('workload.bs', `${bs} must be a positive multiple of 512 bytes`);
  const iodepth = read.integer('workload.iodepth', value.iodepth, { min: 1 }) ?? 16;
  const size = read.size('workload.size', value.size) ?? deviceSize;
  if (deviceSize > 0 && size > deviceSize) read.fail('workload.size', `${size} bytes is more than the device (${deviceSize} bytes)`);
  if (size > 0 && bs > 0 && size < bs) read.fail('workload.size', `${size} bytes is less than one block (bs ${bs})`);
  const verify = read.oneOf('workload.verify', value.verify, FIO_VERIFY) ?? 'crc32c';
  if (verify !== 'none' && (rw === 'read' || rw === 'randread')) read.fail('workload.verify', `a ${rw} workload writes nothing to verify; use a write workload or verify: none`);
  return { kind, rw, bs, iodepth, size, runtimeS, verify };
}

function readSchedule(read: Reader, value: unknown, servers: string[], durationS: number): ScheduledAction[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) return read.fail('schedule', 'expected a list of { at, action, server }'), [];
  const out: ScheduledAction[] = [];
  const state = new ServerStates(servers);
  let lastAt = 0;
  value.forEach((item, i) => {
    const at = `schedule[${i}]`;
    if (!isObj(item)) return read.fail(at, 'expected a mapping { at, action, server }');
    const atS = read.number(`${at}.at`, item.at, { required: true, min: 0 });
    const action = read.oneOf(`${at}.action`, item.action, ACTIONS);
    const server = read.string(`${at}.server`, item.server, { required: true });
    if (server !== undefined && !servers.includes(server)) read.fail(`${at}.server`, noServer(server, servers));
    if (action !== undefined) read.onlyKeys(at, item, ['at', 'action', 'server', ...ACTION_PARAMS[action]], `${action} takes`);
    else read.onlyKeys(at, item, ['at', 'action', 'server', 'delayMs', 'jitterMs', 'for']);
    if (atS !== undefined) {
      if (durationS > 0 && atS >= durationS) read.fail(`${at}.at`, `${atS} s is not before the end of the run (duration ${durationS} s)`);
      if (atS < lastAt) read.fail(`${at}.at`, `${atS} s comes after an action at ${lastAt} s; list actions in time order`);
      else lastAt = atS;
    }
    const forS = read.number(`${at}.for`, item.for, { min: 0, minExclusive: true });
    if (forS !== undefined && atS !== undefined && durationS > 0 && atS + forS > durationS) {
      read.fail(`${at}.for`, `ends at ${atS + forS} s, after the run (duration ${durationS} s)`);
    }
    let delayMs: number | undefined, jitterMs: number | undefined;
    if (action === 'slow') {
      delayMs = read.number(`${at}.delayMs`, item.delayMs, { required: true, min: 0, minExclusive: true });
      jitterMs = read.number(`${at}.jitterMs`, item.jitterMs, { min: 0 }) ?? 0;
    }
    if (atS === undefined || action === undefined || server === undefined || !servers.includes(server)) return;
    const conflict = state.apply(server, action, atS, forS);
    if (conflict) read.fail(at, conflict);
    out.push({
      atS, action, server,
      ...(delayMs !== undefined && { delayMs }), ...(jitterMs !== undefined && { jitterMs }), ...(forS !== undefined && { forS }),
    });
  });
  return out;
}

const noServer = (name: string, servers: string[]): string => `no server '${name}' (servers: ${servers.join(', ')})`;

// Follows each server through the schedule so an action that cannot apply (restart of a
// running server, heal without a black hole, a fault on a killed server) is refused before the run.
class ServerStates {
  private readonly down = new Map<string, number>();
  // server -> lasting fault -> when it ends by itself (Infinity: until undone).
  private readonly active = new Map<string, Map<Lasting, number>>();

  constructor(servers: string[]) {
    for (const s of servers) this.active.set(s, new Map());
  }

  apply(server: string, action: ActionName, atS: number, forS: number | undefined): string | undefined {
    const faults = this.active.get(server)!;
    for (const [f, end] of faults) if (end <= atS) faults.delete(f);
    const downSince = this.down.get(server);
    switch (action) {
      case 'kill':
      case 'crash':
        if (downSince !== undefined) return `${action} ${server} at ${atS} s, but it is already down since ${downSince} s`;
        this.down.set(server, atS);
        faults.clear();
        return undefined;
      case 'restart':
        if (downSince === undefined) return `restart ${server} at ${atS} s, but it is running (kill or crash it first)`;
        this.down.delete(server);
        return undefined;
      case 'clear':
        faults.clear();
        return undefined;
      case 'heal':
      case 'unpartition':
      case 'resume': {
        const fault = (Object.keys(UNDO) as Lasting[]).find((f) => UNDO[f] === action)!;
        if (!faults.has(fault)) return `${action} ${server} at ${atS} s, but no ${fault} is on it then`;
        faults.delete(fault);
        return undefined;
      }
      default: {
        if (downSince !== undefined) return `${action} ${server} at ${atS} s, but it is down since ${downSince} s (restart it first)`;
        if (faults.has(action) && action !== 'slow') return `${action} ${server} at ${atS} s, but it is already on (${UNDO[action]} it first)`;
        faults.set(action, forS === undefined ? Infinity : atS + forS);
        return undefined;
      }
    }
  }
}

// Reads typed fields, noting a problem (and returning undefined) for each bad one.
class Reader {
  constructor(private readonly bad: (where: string, what: string) => void) {}

  fail(where: string, what: string): void {
    this.bad(where, what);
  }

  onlyKeys(where: string, obj: Obj, allowed: readonly string[], takes = 'expected one of'): void {
    for (const key of Object.keys(obj)) {
      if (!allowed.includes(key)) this.bad(where ? `${where}.${key}` : key, `unknown key (${takes}: ${allowed.join(', ')})`);
    }
  }

  string(where: string, v: unknown, o: { required?: boolean; pattern?: RegExp; patternText?: string } = {}): string | undefined {
    if (v === undefined || v === null) return o.required ? (this.bad(where, 'required'), undefined) : undefined;
    if (typeof v !== 'string' || v === '') return this.bad(where, `expected text, got ${show(v)}`), undefined;
    if (o.pattern && !o.pattern.test(v)) return this.bad(where, `'${v}' may hold only ${o.patternText}`), undefined;
    return v;
  }

  number(where: string, v: unknown, o: { required?: boolean; min?: number; minExclusive?: boolean } = {}): number | undefined {
    if (v === undefined || v === null) return o.required ? (this.bad(where, 'required'), undefined) : undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) return this.bad(where, `expected a number, got ${show(v)}`), undefined;
    if (o.min !== undefined && (o.minExclusive ? v <= o.min : v < o.min)) {
      return this.bad(where, `${v} must be ${o.minExclusive ? 'more than' : 'at least'} ${o.min}`), undefined;
    }
    return v;
  }

  integer(where: string, v: unknown, o: { min?: number } = {}): number | undefined {
    const n = this.number(where, v, o);
    if (n !== undefined && !Number.isInteger(n)) return this.bad(where, `expected a whole number, got ${n}`), undefined;
    return n;
  }

  boolean(where: string, v: unknown): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') return this.bad(where, `expected true or false, got ${show(v)}`), undefined;
    return v;
  }

  oneOf<T extends string>(where: string, v: unknown, allowed: readonly T[]): T | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      return this.bad(where, `expected one of ${allowed.join(', ')}, got ${show(v)}`), undefined;
    }
    return v as T;
  }

  size(where: string, v: unknown): number | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
    if (typeof v !== 'string') return this.bad(where, `expected a size such as 64M, got ${show(v)}`), undefined;
    try {
      return parseSize(v);
    } catch (e) {
      return this.bad(where, (e as Error).message), undefined;
    }
  }

  rate(where: string, v: unknown): number | undefined {
    const text = typeof v === 'string' ? v.replace(/\s*\/\s*s$/i, '') : v;
    const n = this.size(where, text);
    if (n === 0) return this.bad(where, 'must be more than 0 (leave it out for no cap)'), undefined;
    return n;
  }
}
