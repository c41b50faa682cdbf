import { CloseCode, PROTOCOL_VERSION, logger, type Hello, type Welcome } from '@wsblk/shared';
import type { Backend, ClusterLock, LockWriter } from '../backend/backend.js';
import type { ExportStats } from '../metrics/export-stats.js';
import type { ExportMembership, SetView } from '../session/membership.js';
import { evict, takeOverFenced } from '../session/fence.js';
import { secretHashOf, type Session, type SessionOwner } from '../session/session.js';
import type { SessionTable } from '../session/session-table.js';

const log = logger('server');

export interface ExportHandle {
  name: string;
  backend: Backend;
  maxPayload: number;
  membership: ExportMembership;
  /** What its requests did, for /metrics. */
  stats: ExportStats;
  /** The writer lock shared with other servers of the same storage (an RBD image), if any. */
  clusterLock?: ClusterLock;
}

/** What a hello was granted: the session it runs in and what it may do. */
export interface Admission {
  session: Session;
  epoch: number;
  resumed: boolean;
  /** The token, the export or the session is read-only. */
  readOnly: boolean;
  maxPayload: number;
  lz4: boolean;
  /** The replica set the client writes for (hello), if it is a replica set's client. */
  set?: SetView;
  /** A resume waits for this (the fence) before it is welcomed. */
  fenced?: Promise<void>;
}

/** A hello the server will not admit: the connection closes with this code and reason. */
export class Refusal extends Error {
  constructor(readonly code: CloseCode, reason: string) {
    super(reason);
  }
}

/**
 * "X on HOST (session 1234abcd, connected)": who holds an export's writer lock, short enough
 * for a close reason (123 bytes) with the hint after it.
 */
function holderOf(s: Session, graceMs: number): string {
  const away = Date.now() - s.disconnectedAt;
  const state = s.owner
    ? 'connected'
    : `lost ${Math.round(away / 1000)} s ago, may resume for ${Math.max(0, Math.round((graceMs - away) / 1000))} s`;
  return `${s.clientId.slice(0, 32)}${s.host ? ` on ${s.host.slice(0, 24)}` : ''} (session ${s.id.slice(0, 8)}, ${state})`;
}

/**
 * hello -> admission: resumes the hello's session (fencing its older connection; the welcome
 * waits for `fenced`) or creates one, as the export's one writer unless it is read-only.
 * Returns a promise only when it must wait before it can decide (a steal); throws (or rejects
 * with) a Refusal.
 */
export function admit(
  hello: Hello, exp: ExportHandle, grantReadOnly: boolean, sessions: SessionTable, owner: SessionOwner, peer: string,
): Admission | Promise<Admission> {
  if (hello.setId === undefined) return admitSession(hello, exp, grantReadOnly, sessions, owner, peer);
  // A replica set's client: its writes are fenced by the export's record, which must be known first.
  return exp.membership.load().then(() => admitSession(hello, exp, grantReadOnly, sessions, owner, peer));
}

function admitSession(
  hello: Hello, exp: ExportHandle, grantReadOnly: boolean, sessions: SessionTable, owner: SessionOwner, peer: string,
): Admission | Promise<Admission> {
  const terms = {
    maxPayload: Math.min(hello.maxPayload, exp.maxPayload),
    lz4: hello.features.includes('lz4'),
    ...(hello.setId !== undefined ? { set: { setId: hello.setId, epoch: hello.setEpoch! } } : {}),
  };
  const session = hello.resume ? sessions.find(hello.resume, exp.name) : undefined;
  if (session) {
    // Checked before the takeover: a wrong secret must not fence the owner.
    if (!session.secretMatches(hello.secret)) {
      throw new Refusal(CloseCode.BadSecret, 'session secret does not match');
    }
    const t0 = Date.now();
    if (session.owner && session.owner !== owner) exp.stats.fenced++;
    const { epoch, drained } = takeOverFenced(session, owner);
    const fenced = drained.then(() => {
      exp.stats.fenceWaitSeconds += (Date.now() - t0) / 1000;
      log.info(`${peer}: resumed session ${session.id.slice(0, 8)} epoch ${epoch} (fence waited ${Date.now() - t0} ms)`);
    });
    return { session, epoch, resumed: true, readOnly: grantReadOnly || session.readOnly, ...terms, fenced };
  }
  const readOnly = grantReadOnly || hello.readOnly === true;
  const writer = !readOnly && !exp.backend.info.readOnly;
  const start = (): Admission => {
    const fresh = sessions.create(exp.name, hello.clientId, { secret: hello.secret, host: hello.host, readOnly });
    if (writer) sessions.claimWriter(fresh);
    log.info(`${peer}: new ${writer ? 'writer' : 'read-only'} session ${fresh.id.slice(0, 8)} for '${exp.name}' (client ${hello.clientId}${hello.host ? ` on ${hello.host}` : ''})`);
    return { session: fresh, epoch: fresh.takeOver(owner), resumed: false, readOnly, ...terms };
  };
  const holder = writer ? sessions.writerOf(exp.name) : undefined;
  if (!holder) return writer && exp.clusterLock ? lockThenStart(exp, exp.clusterLock, hello, hello.steal === true, sessions, start, peer) : start();
  // The holder made with this hello's secret is this client's own earlier session, one whose
  // welcome it never got (a reconnect that timed out after the server had admitted it): the
  // client cannot resume it by id, and must not be locked out by it. It is replaced, as a steal.
  const own = holder.madeWith(hello.secret);
  if (!hello.steal && !own) {
    throw new Refusal(CloseCode.WriterBusy, `writer is ${holderOf(holder, sessions.graceMs)}; --steal takes over`);
  }
  const who = `${hello.clientId}${hello.host ? ` on ${hello.host}` : ''}`;
  if (own) log.warn(`${peer}: ${who} replaces its own earlier session ${holder.id.slice(0, 8)} of '${exp.name}' (its welcome was lost)`);
  else log.warn(`${peer}: ${who} steals '${exp.name}' from ${holderOf(holder, sessions.graceMs)}`);
  if (holder.owner) exp.stats.fenced++;
  return evict(sessions, holder, `taken over by ${who}`).then(() => {
    // Another steal may have won the export while this one waited for the drain.
    const winner = sessions.writerOf(exp.name);
    if (winner) throw new Refusal(CloseCode.WriterBusy, `writer is ${holderOf(winner, sessions.graceMs)}; --steal takes over`);
    return exp.clusterLock ? lockThenStart(exp, exp.clusterLock, hello, true, sessions, start, peer) : start();
  });
}

/**
 * A new writer on storage other servers share: this server's writer must hold the cluster-wide
 * lock first (another gateway's writer refuses it, --steal fences that gateway, and so does a
 * device's `reclaim` of the lock taken for it, proven by its secret).
 */
function lockThenStart(
  exp: ExportHandle, lock: ClusterLock, hello: Hello, steal: boolean, sessions: SessionTable, start: () => Admission, peer: string,
): Promise<Admission> {
  const writer: LockWriter = {
    clientId: hello.clientId, reclaim: hello.reclaim === true,
    ...(hello.secret !== undefined ? { secretHash: secretHashOf(hello.secret) } : {}),
  };
  return lock.acquireLock(steal, writer, () => !sessions.writerOf(exp.name)).then(
    (taken) => {
      // Another hello on this server may have become the writer while the lock was taken.
      const winner = sessions.writerOf(exp.name);
      if (winner) throw new Refusal(CloseCode.WriterBusy, `writer is ${holderOf(winner, sessions.graceMs)}; --steal takes over`);
      if (taken.reclaimedFrom) {
        log.warn(`${peer}: takeover of '${exp.name}' by the same device (client ${hello.clientId}) from gateway ${taken.reclaimedFrom}; old gateway blocklisted`);
      }
      // The address `ceph osd blocklist ls` shows once another gateway fences this one.
      log.info(`${peer}: '${exp.name}' writer lock taken as ${taken.owner}`);
      return start();
    },
    (e: Error) => {
      throw new Refusal(CloseCode.WriterBusy, `${e.message.slice(0, 90)}; --steal takes over`);
    },
  );
}

/** The welcome for an admission; the backend's info is read now (it may change later). */
export function welcomeOf(exp: ExportHandle, a: Admission): Welcome {
  const info = exp.backend.info;
  const readOnly = info.readOnly || a.readOnly;
  return {
    version: PROTOCOL_VERSION,
    exportName: exp.name,
    size: info.size,
    blockSize: info.blockSize,
    readOnly,
    flush: info.flush && !readOnly,
    fua: info.fua && !readOnly,
    discard: info.discard && !readOnly,
    writeZeroes: info.writeZeroes && !readOnly,
    maxPayload: a.maxPayload,
    sessionId: a.session.id,
    epoch: a.epoch,
    resumed: a.resumed,
    nextSeq: a.session.nextSeq,
    features: a.lz4 ? ['lz4'] : [],
  };
}
