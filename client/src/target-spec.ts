// What a device is connected to and how: one typed record that `connect` makes, the daemon
// runs from, the state file keeps (DeviceState.target) and `recover` reads back. The token is
// never in it, only where to find it; the session secret is, which is why the state file is 0600.
import { randomBytes } from 'node:crypto';
import { readTokenFile, type SetRecord } from '@wsblk/shared';
import type { RemoteDiskOptions } from './transport/remote-disk.js';

export interface TargetSpec {
  /** ws[s]://host:port/<export>, never with credentials. */
  url: string;
  /** The export's name (the URL's path). */
  export: string;
  /**
   * Where the bearer token comes from: a file (its first line), the daemon's environment
   * ($WSBLK_TOKEN, also how a token given in the URL reaches the daemon), or none.
   */
  token: { file: string } | { env: 'WSBLK_TOKEN' } | 'none';
  /** The server session (changes when the server restarts); '' before the first welcome. */
  sessionId: string;
  /** Proves to the server that a resume comes from this device's daemon (hex; never printed). */
  secret: string;
  compress: 'lz4' | 'none';
  /** First connect gives up after this long (ms); 0 = never. */
  connectTimeoutMs: number;
  /** Pending I/O fails with EIO after this long (ms); 0 = never. */
  ioTimeoutMs: number;
  /** Bytes of requests on the wire at once. */
  maxInflightBytes: number;
  /** Attach read-only (the device is read-only). */
  readOnly: boolean;
  /**
   * Other gateways of the same export (`connect URL --failover URL2 ...`), never with
   * credentials: a lost connection moves to one of them. Not a replica set: the data is
   * written once, by whichever gateway the device is on. Absent: `url` only.
   */
  failover?: string[];
  /** The gateway `sessionId` lives on, when it is one of `failover` (absent: `url`). Kept current. */
  gateway?: string;
  /** A replica set (`connect URL1,URL2,...`): `url` is then its first replica. Absent: one server. */
  set?: SetSpec;
}

/** A device over several servers: every replica (its session kept current) and the set's options. */
export interface SetSpec {
  replicas: Array<{ url: string; sessionId: string }>;
  minInSync: number;
  onNoQuorum: 'wait' | 'error';
  replicaTimeoutMs: number;
  /** Resync copies at most this many bytes per second (0: no limit). */
  resyncRate: number;
  /** Trust this replica at the first attach when the records do not settle it (then dropped). */
  forceInSync?: string;
  /** A new set's replicas are identical already: all in sync at the first attach (then dropped). */
  assumeClean?: boolean;
  /** The membership record this device stored last: a restarted daemon trusts it if still the newest. */
  known?: SetRecord;
}

/** A fresh session secret: 32 random bytes, hex. */
export function newSecret(): string {
  return randomBytes(32).toString('hex');
}

/** The token the spec names, read now (a file is read at every connect: it may be rotated). */
export function tokenOf(spec: TargetSpec): string | undefined {
  const t = spec.token;
  if (t === 'none') return undefined;
  if ('file' in t) return readTokenFile(t.file);
  return process.env[t.env] || undefined;
}

/**
 * The transport's options for a spec: the one place a spec becomes a connection. `replica`: one
 * replica of a set (its URL and session); an I/O timeout there fails the replica's request, and
 * the set ejects the replica or, if none answered, fails the request.
 */
export function transportOptions(spec: TargetSpec, replica?: { url: string; sessionId: string }): RemoteDiskOptions {
  const sessionId = replica ? replica.sessionId : spec.sessionId;
  return {
    url: replica?.url ?? spec.url, token: tokenOf(spec), compress: spec.compress, connectTimeoutMs: spec.connectTimeoutMs,
    ioTimeoutMs: spec.ioTimeoutMs, maxInflightBytes: spec.maxInflightBytes, readOnly: spec.readOnly,
    secret: spec.secret, ...(sessionId ? { resumeSession: sessionId } : {}),
    ...(!replica && spec.failover?.length ? { failover: spec.failover, ...(spec.gateway ? { resumeGateway: spec.gateway } : {}) } : {}),
  };
}
