import { PROTOCOL_VERSION, logger, type Hello, type Welcome } from '@wsblk/shared';
import type { Backend } from '../backend/backend.js';
import { takeOverFenced } from '../session/fence.js';
import type { Session, SessionOwner } from '../session/session.js';
import type { SessionTable } from '../session/session-table.js';

const log = logger('server');

export interface ExportHandle {
  name: string;
  backend: Backend;
  maxPayload: number;
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
  /** A resume waits for this (the fence) before it is welcomed. */
  fenced?: Promise<void>;
}

/**
 * hello -> admission: resumes the hello's session (fencing its older connection; the welcome
 * waits for `fenced`) or creates one. Returns a promise only when it must wait before it can
 * decide.
 */
export function admit(
  hello: Hello, exp: ExportHandle, grantReadOnly: boolean, sessions: SessionTable, owner: SessionOwner, peer: string,
): Admission | Promise<Admission> {
  const session = hello.resume ? sessions.find(hello.resume, exp.name) : undefined;
  const terms = {
    readOnly: grantReadOnly,
    maxPayload: Math.min(hello.maxPayload, exp.maxPayload),
    lz4: hello.features.includes('lz4'),
  };
  if (!session) {
    const fresh = sessions.create(exp.name, hello.clientId);
    log.info(`${peer}: new session ${fresh.id.slice(0, 8)} for '${exp.name}' (client ${hello.clientId})`);
    return { session: fresh, epoch: fresh.takeOver(owner), resumed: false, ...terms };
  }
  const t0 = Date.now();
  const { epoch, drained } = takeOverFenced(session, owner);
  const fenced = drained.then(() => {
    log.info(`${peer}: resumed session ${session.id.slice(0, 8)} epoch ${epoch} (fence waited ${Date.now() - t0} ms)`);
  });
  return { session, epoch, resumed: true, ...terms, fenced };
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
