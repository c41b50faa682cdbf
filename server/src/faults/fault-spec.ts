// What a fault is, as the admin API and `serve --faults` take it: one flat JSON object, checked
// here field by field so a bad one is refused with a one-line reason (HTTP 400).
import { Errno } from '@wsblk/shared';

export const STORAGE_KINDS = ['delay', 'error', 'bad-range', 'pause', 'crash'] as const;
export const TRANSPORT_KINDS = ['latency', 'bandwidth', 'blackhole', 'reset', 'drop'] as const;
export type StorageKind = (typeof STORAGE_KINDS)[number];
export type TransportKind = (typeof TRANSPORT_KINDS)[number];
export type FaultKind = StorageKind | TransportKind;

export const OP_KINDS = ['read', 'write', 'flush', 'discard', 'writeZeroes'] as const;
export type OpKind = (typeof OP_KINDS)[number];

/** The errnos a storage fault may answer with: those a reply can carry and the client maps. */
export const FAULT_ERRNOS: Record<string, number> = {
  EIO: Errno.EIO, ENOSPC: Errno.ENOSPC, EPERM: Errno.EPERM, EINVAL: Errno.EINVAL,
  ENOMEM: Errno.ENOMEM, ENOTSUP: Errno.ENOTSUP, ESTALE: Errno.ESTALE,
};

export interface FaultSpec {
  name: string;
  kind: FaultKind;
  /** The export it applies to; absent: every export. */
  export?: string;
  /** Only this session (its id, or a prefix of it as the logs show). */
  session?: string;
  /** Only sessions whose hello gave this client id. */
  client?: string;
  /** Storage: per request. Transport: per connection, decided once. Default 1. */
  probability: number;
  /** Fires this many times at most (requests delayed or failed, resets); absent: no limit. */
  count?: number;
  /** Storage: the operations it applies to (default all but pause's and crash's own rules). */
  ops?: OpKind[];
  /** delay, latency: milliseconds added, plus or minus up to `jitter`. */
  ms?: number;
  jitter?: number;
  /** error, bad-range: the errno answered (default EIO). */
  errno?: string;
  /** bad-range: the byte range whose reads or writes fail. */
  offset?: number;
  length?: number;
  /** bandwidth: bytes per second. */
  rate?: number;
  /** latency, bandwidth, drop: which way ('replies': server to client, the default; 'requests'). */
  direction?: 'replies' | 'requests';
}

export class FaultSpecError extends Error {
  override name = 'FaultSpecError';
}

/** The fields each kind takes beyond the common ones (name, kind, export, session, client, probability, count). */
const FIELDS: Record<FaultKind, readonly string[]> = {
  delay: ['ms', 'jitter', 'ops'],
  error: ['errno', 'ops'],
  'bad-range': ['offset', 'length', 'errno', 'ops'],
  pause: ['ops'],
  crash: [],
  latency: ['ms', 'jitter', 'direction'],
  bandwidth: ['rate', 'direction'],
  blackhole: [],
  reset: [],
  drop: ['direction'],
};
const COMMON = ['name', 'kind', 'export', 'session', 'client', 'probability', 'count'];

export function isStorageKind(kind: FaultKind): kind is StorageKind {
  return (STORAGE_KINDS as readonly string[]).includes(kind);
}

/**
 * Checks a fault as sent (JSON) and returns it complete; throws FaultSpecError with a one-line
 * reason. `defaultName` names a fault that came without one.
 */
export function parseFault(body: unknown, defaultName: (kind: FaultKind) => string): FaultSpec {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new FaultSpecError('a fault is a JSON object, e.g. {"kind":"delay","export":"disk0","ms":50}');
  const o = body as Record<string, unknown>;
  const kind = o.kind;
  const kinds = [...STORAGE_KINDS, ...TRANSPORT_KINDS];
  if (typeof kind !== 'string' || !(kinds as string[]).includes(kind)) {
    throw new FaultSpecError(`kind must be one of ${kinds.join(', ')}${kind === undefined ? '' : ` (got ${JSON.stringify(kind)})`}`);
  }
  const k = kind as FaultKind;
  for (const key of Object.keys(o)) {
    if (!COMMON.includes(key) && !FIELDS[k].includes(key)) {
      throw new FaultSpecError(`${k} takes no '${key}' (it takes ${[...COMMON.slice(2), ...FIELDS[k]].join(', ')})`);
    }
  }
  const str = (key: string, re = /^[A-Za-z0-9._-]{1,64}$/): string | undefined => {
    const v = o[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !re.test(v)) throw new FaultSpecError(`${key} must be 1-64 of A-Z a-z 0-9 . _ -`);
    return v;
  };
  const num = (key: string, min: number, max: number, int = false): number | undefined => {
    const v = o[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (int && !Number.isInteger(v))) {
      throw new FaultSpecError(`${key} must be ${int ? 'a whole number' : 'a number'} from ${min} to ${max}`);
    }
    return v;
  };
  const spec: FaultSpec = { name: str('name') ?? defaultName(k), kind: k, probability: num('probability', 0, 1) ?? 1 };
  const exp = str('export');
  if (exp !== undefined) spec.export = exp;
  const session = str('session', /^[0-9a-f]{4,32}$/);
  if (session !== undefined) spec.session = session;
  const client = str('client', /^[\x21-\x7e]{1,128}$/);
  if (client !== undefined) spec.client = client;
  const count = num('count', 1, Number.MAX_SAFE_INTEGER, true);
  if (count !== undefined) spec.count = count;
  if (o.ops !== undefined) {
    if (!Array.isArray(o.ops) || o.ops.length === 0 || o.ops.some((x) => !(OP_KINDS as readonly unknown[]).includes(x))) {
      throw new FaultSpecError(`ops must be a non-empty list of ${OP_KINDS.join(', ')}`);
    }
    spec.ops = [...new Set(o.ops as OpKind[])];
  }
  const ms = num('ms', 0, 3_600_000);
  const jitter = num('jitter', 0, 3_600_000);
  if (ms !== undefined) spec.ms = ms;
  if (jitter !== undefined) spec.jitter = jitter;
  if ((k === 'delay' || k === 'latency') && ms === undefined) throw new FaultSpecError(`${k} needs ms (milliseconds)`);
  if (o.errno !== undefined) {
    if (typeof o.errno !== 'string' || !(o.errno in FAULT_ERRNOS)) throw new FaultSpecError(`errno must be one of ${Object.keys(FAULT_ERRNOS).join(', ')}`);
    spec.errno = o.errno;
  }
  if (k === 'bad-range') {
    const offset = num('offset', 0, Number.MAX_SAFE_INTEGER, true);
    const length = num('length', 1, Number.MAX_SAFE_INTEGER, true);
    if (offset === undefined || length === undefined) throw new FaultSpecError('bad-range needs offset and length (bytes)');
    spec.offset = offset;
    spec.length = length;
  }
  if (k === 'bandwidth') {
    const rate = num('rate', 1, Number.MAX_SAFE_INTEGER);
    if (rate === undefined) throw new FaultSpecError('bandwidth needs rate (bytes per second)');
    spec.rate = rate;
  }
  if (o.direction !== undefined) {
    if (o.direction !== 'replies' && o.direction !== 'requests') throw new FaultSpecError("direction must be 'replies' or 'requests'");
    spec.direction = o.direction;
  }
  if (k === 'crash' && (spec.probability !== 1 || spec.session || spec.client || spec.count)) {
    throw new FaultSpecError('crash applies to an export\'s data, not to a client: it takes no probability, session, client or count');
  }
  if (k === 'crash' && spec.export === undefined) throw new FaultSpecError('crash needs an export');
  return spec;
}

/** One line for logs and `fault list`: "delay-1 delay export=disk0 ms=50 ops=read". */
export function describeFault(f: FaultSpec): string {
  const parts = [f.name, f.kind];
  for (const [key, v] of Object.entries(f)) {
    if (key === 'name' || key === 'kind' || (key === 'probability' && v === 1)) continue;
    parts.push(`${key}=${Array.isArray(v) ? v.join(',') : String(v)}`);
  }
  return parts.join(' ');
}
