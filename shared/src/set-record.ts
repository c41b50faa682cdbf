import { LIMITS } from './constants.js';
import { ProtocolError } from './errors.js';

/**
 * A replica set's membership record, as each replica's server keeps it next to the export's
 * data (META_READ / META_WRITE, JSON): the set, its epoch, and the replicas in sync at that epoch.
 */
export interface SetRecord {
  setId: string;
  epoch: number;
  /** Replica ids (their URLs without credentials) in sync at this epoch. */
  inSync: string[];
}

export function encodeSetRecord(r: SetRecord): Buffer {
  return Buffer.from(JSON.stringify({ setId: r.setId, epoch: r.epoch, inSync: r.inSync }) + '\n');
}

/** Parses and checks a record; throws a ProtocolError that says what is wrong. */
export function parseSetRecord(buf: Buffer): SetRecord {
  if (buf.length > LIMITS.maxMetaBytes) throw new ProtocolError(`membership record of ${buf.length} bytes is too large`);
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw new ProtocolError(`membership record is not JSON: ${(e as Error).message}`);
  }
  const o = v as Partial<SetRecord> | null;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new ProtocolError('membership record: expected an object');
  if (typeof o.setId !== 'string' || !/^[0-9a-zA-Z._-]{1,64}$/.test(o.setId)) throw new ProtocolError('membership record: setId must be 1-64 characters [0-9a-zA-Z._-]');
  if (!Number.isSafeInteger(o.epoch) || o.epoch! < 0) throw new ProtocolError('membership record: epoch must be a whole number >= 0');
  if (!Array.isArray(o.inSync) || o.inSync.length === 0 || o.inSync.length > 32
    || o.inSync.some((x) => typeof x !== 'string' || x.length === 0 || x.length > 1024)) {
    throw new ProtocolError('membership record: inSync must list 1-32 replica ids');
  }
  return { setId: o.setId, epoch: o.epoch!, inSync: [...o.inSync] };
}
