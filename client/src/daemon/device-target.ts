import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { logger } from '@wsblk/shared';
import { AttachRefused } from '../replica/membership.js';
import { RemoteLink } from '../replica/remote-link.js';
import { ReplicaSet } from '../replica/replica-set.js';
import type { BlockTarget, IoCallback, IoRequest } from '../target.js';
import { transportOptions, type SetSpec, type TargetSpec } from '../target-spec.js';
import { ConnectError, RemoteDisk, type RemoteDiskOptions } from '../transport/remote-disk.js';
import { meterReplica, unmeterReplica, type DaemonMetrics } from './metrics.js';

const log = logger('daemon');

/** What a daemon serves its frontend from: one server, or a replica set. */
export interface DeviceTarget extends BlockTarget {
  /** Requests can be answered now. */
  readonly connected: boolean;
  /** Requests outstanding. */
  readonly inflight: number;
  /** For logs: the URL, or the replicas' URLs. */
  readonly where: string;
  /** Figures for `wsblk list`. */
  status(): Record<string, unknown>;
  close(timeoutMs: number): Promise<void>;
  /** The server(s) will not take this device back: it must stop. */
  onFenced(fn: (why: string) => void): void;
  /** Something to keep in the state file changed (a session id, the set's epoch). */
  onChange(fn: () => void): void;
}

export interface OpenOptions {
  steal?: boolean;
  connectTimeoutMs?: number;
  onWait?: (line: string) => void;
  /** Where dirty maps of this device's replicas live. */
  dir: string;
  id: string;
  /** Counts the device's requests and each replica's. */
  metrics: DaemonMetrics;
}

/** One server: the RemoteDisk itself. */
async function single(spec: TargetSpec, o: OpenOptions): Promise<DeviceTarget> {
  const disk = await RemoteDisk.connect(diskOptions(spec, undefined, o));
  // The session and the gateway it lives on: a recovering daemon resumes it there first.
  const keep = (): boolean => {
    const { sessionId, gateway } = disk.stats;
    const onGateway = gateway === spec.url ? undefined : gateway;
    if (sessionId === spec.sessionId && onGateway === spec.gateway) return false;
    spec.sessionId = sessionId;
    if (onGateway) spec.gateway = onGateway;
    else delete spec.gateway;
    return true;
  };
  keep();
  const m = o.metrics;
  m.transport = () => disk.stats;
  if (spec.failover?.length) m.gateways = [spec.url, ...spec.failover];
  const send = (req: IoRequest, cb: IoCallback) => disk.submit(req, cb);
  return {
    get info() { return disk.info; },
    submit: (req, cb) => m.io.submit(send, req, cb),
    get connected() { return disk.connected; },
    get inflight() { return disk.stats.inflight; },
    where: disk.url,
    status() {
      const t = disk.stats;
      return {
        state: t.connected ? 'connected' : 'reconnecting', inflight: t.inflight, reconnects: t.reconnects,
        replayed: t.replayed, timedOut: t.timedOut, requestsSent: t.requestsSent, messagesSent: t.messagesSent,
        repliesReceived: t.repliesReceived, messagesReceived: t.messagesReceived, sessionId: t.sessionId, epoch: t.epoch,
        ...(spec.failover?.length ? { gateway: t.gateway, failover: spec.failover, failovers: t.failovers } : {}),
        io: m.io.snapshot(),
      };
    },
    close: (ms) => disk.close(ms),
    onFenced: (fn) => disk.on('fenced', fn),
    onChange: (fn) => disk.on('connected', () => {
      if (keep()) fn();
    }),
  };
}

function diskOptions(spec: TargetSpec, replica: { url: string; sessionId: string } | undefined, o: OpenOptions): RemoteDiskOptions {
  return {
    ...transportOptions(spec, replica), lendReads: true,
    ...(o.steal ? { steal: true } : {}),
    ...(o.connectTimeoutMs !== undefined ? { connectTimeoutMs: o.connectTimeoutMs } : {}),
    ...(o.onWait ? { onWait: o.onWait } : {}),
  };
}

/** The dirty map of one replica of device `id`. */
export function mapPath(dir: string, id: string, url: string): string {
  return join(dir, `${id}.${createHash('sha256').update(url).digest('hex').slice(0, 12)}.dirty`);
}

/**
 * Connects every replica (one that cannot be reached now keeps trying in the background: it is
 * out of the set until it is back and resynced), then attaches the set.
 */
async function replicaSet(spec: TargetSpec, set: SetSpec, o: OpenOptions): Promise<DeviceTarget> {
  const disks = await connectReplicas(spec, set, o);
  disks.forEach((d, i) => { if (d.connected) set.replicas[i]!.sessionId = d.stats.sessionId; });
  const m = o.metrics;
  disks.forEach((d, i) => meterReplica(m, set.replicas[i]!.url, d));
  const links = disks.map((d, i) => new RemoteLink(d, set.replicas[i]!.url));
  let rs: ReplicaSet;
  try {
    rs = await ReplicaSet.open(links, {
      minInSync: set.minInSync, onNoQuorum: set.onNoQuorum, replicaTimeoutMs: set.replicaTimeoutMs, resyncRate: set.resyncRate,
      mapPath: (url) => mapPath(o.dir, o.id, url),
      ...(set.forceInSync ? { forceInSync: set.forceInSync } : {}), ...(set.assumeClean ? { assumeClean: true } : {}), ...(set.known ? { known: set.known } : {}),
    });
  } catch (e) {
    await Promise.all(disks.map((d) => d.close(0)));
    if (e instanceof AttachRefused) throw new ConnectError(`replica set refused: ${e.message}`, undefined, true);
    throw e;
  }
  delete set.forceInSync; // once: a restarted daemon trusts its own record instead
  delete set.assumeClean;
  set.known = rs.record;
  const fenced: Array<(why: string) => void> = [];
  const changed: Array<() => void> = [];
  const watch = (d: RemoteDisk, i: number) => {
    d.on('fenced', (why: string) => {
      // One replica refusing this device back is an ejection for the set; the set decides.
      log.warn(`replica ${set.replicas[i]?.url} will not take this device back: ${why}`);
    });
    d.on('connected', () => {
      const r = set.replicas[i];
      if (r && d.stats.sessionId !== r.sessionId) {
        r.sessionId = d.stats.sessionId;
        for (const f of changed) f();
      }
    });
  };
  disks.forEach(watch);
  m.replicaStatus = () => rs.status.replicas;
  m.observeStates();
  const send = (req: IoRequest, cb: IoCallback) => rs.submit(req, cb);
  rs.on('state', () => {
    m.observeStates();
    set.known = rs.record;
    for (const f of changed) f();
  });
  return {
    get info() { return rs.info; },
    submit: (req, cb) => m.io.submit(send, req, cb),
    get connected() { return rs.connected; },
    get inflight() { return rs.inflight; },
    get where() { return set.replicas.map((r) => r.url).join(','); },
    status() {
      const s = rs.status;
      const replicas = s.replicas.map((r) => {
        const x = m.replicas.find((y) => y.url === r.url);
        const t = x?.stats();
        return { ...r, ...(x && t ? { reconnects: t.reconnects, replayed: t.replayed, requestsSent: t.requestsSent, messagesSent: t.messagesSent, repliesReceived: t.repliesReceived, messagesReceived: t.messagesReceived, ejections: m.ejectionsOf(r.url), io: x.io.snapshot() } : {}) };
      });
      return { state: s.inSync > 0 ? (rs.connected ? 'connected' : 'reconnecting') : 'no-quorum', inflight: rs.inflight, setId: s.setId, epoch: s.epoch, inSync: s.inSync, replicas, io: m.io.snapshot() };
    },
    close: async () => { await rs.close(); },
    onFenced: (fn) => fenced.push(fn),
    onChange: (fn) => changed.push(fn),
    // Membership at run time (wsblk replica add/remove).
    ...{
      async addReplica(url: string): Promise<void> {
        if (set.replicas.some((r) => r.url === url)) throw new Error(`${url} is a replica already`);
        const entry = { url, sessionId: '' };
        const d = await connectReplica(spec, entry, { ...o, steal: false }, set.replicaTimeoutMs);
        set.replicas.push(entry);
        meterReplica(m, url, d);
        watch(d, set.replicas.length - 1);
        try {
          rs.addReplica(new RemoteLink(d, url));
        } catch (e) {
          set.replicas.pop();
          unmeterReplica(m, url);
          await d.close(0);
          throw e;
        }
        for (const f of changed) f();
      },
      async removeReplica(url: string): Promise<void> {
        await rs.removeReplica(url);
        set.replicas = set.replicas.filter((r) => r.url !== url);
        unmeterReplica(m, url);
        for (const f of changed) f();
      },
    },
  } as DeviceTarget & ReplicaControl;
}

/** What `wsblk replica add|remove` asks of a replica-set device. */
export interface ReplicaControl {
  addReplica(url: string): Promise<void>;
  removeReplica(url: string): Promise<void>;
}

/** A replica's transport: connected now, or (unreachable but not refused) trying in the background. */
async function connectReplica(spec: TargetSpec, r: { url: string; sessionId: string }, o: OpenOptions, timeoutMs?: number): Promise<RemoteDisk> {
  const opts = diskOptions(spec, r, o);
  try {
    return await RemoteDisk.connect(timeoutMs === undefined ? opts : { ...opts, connectTimeoutMs: timeoutMs });
  } catch (e) {
    if (e instanceof ConnectError && e.fatal) throw new ConnectError(`replica ${r.url}: ${e.message}`, e.status, true, e.closeCode, e.closeReason);
    log.warn(`replica ${r.url} is unreachable (${(e as Error).message}); it joins when it is back`);
    return RemoteDisk.background(opts);
  }
}

/**
 * Connects every replica at once, each given at most the replica timeout: a replica that is not
 * there by then goes on trying in the background. With none there, tries again until the
 * connect timeout. A replica that refuses (token, export, another writer) fails the attach.
 */
async function connectReplicas(spec: TargetSpec, set: SetSpec, o: OpenOptions): Promise<RemoteDisk[]> {
  const total = o.connectTimeoutMs ?? spec.connectTimeoutMs;
  const deadline = total > 0 ? Date.now() + total : Infinity;
  for (;;) {
    const each = Math.max(1, Math.min(set.replicaTimeoutMs, deadline - Date.now()));
    const tries = await Promise.allSettled(set.replicas.map((r) => connectReplica(spec, r, o, each)));
    const disks = tries.filter((t): t is PromiseFulfilledResult<RemoteDisk> => t.status === 'fulfilled').map((t) => t.value);
    const refused = tries.find((t): t is PromiseRejectedResult => t.status === 'rejected');
    if (refused || !disks.some((d) => d.connected)) await Promise.all(disks.map((d) => d.close(0)));
    if (refused) throw refused.reason;
    if (disks.some((d) => d.connected)) return disks;
    if (Date.now() >= deadline) throw new ConnectError(`no replica is reachable (${set.replicas.map((r) => r.url).join(', ')})`);
    o.onWait?.(`no replica is reachable yet; retrying`);
  }
}

export function openTarget(spec: TargetSpec, o: OpenOptions): Promise<DeviceTarget> {
  return spec.set ? replicaSet(spec, spec.set, o) : single(spec, o);
}
