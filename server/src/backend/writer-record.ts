// The record of whom a gateway took an RBD image's exclusive lock for (image metadata
// `wsblk.writer`): a device that failed over to another gateway proves with its secret that it
// is that writer, and takes its lock back without --steal.
import { timingSafeEqual } from 'node:crypto';
import type { LockWriter } from './backend.js';

export const WRITER_KEY = 'wsblk.writer';

export interface WriterRecord {
  /** sha256 of the device's session secret (hex); absent: a device without a secret. */
  secretHash?: string;
  clientId: string;
  /** When the lock was taken (ISO 8601). */
  since: string;
  /** The lock owner it was taken as (the gateway's Ceph client address): a record left by an earlier owner does not count. */
  gateway: string;
}

export function writerRecord(writer: LockWriter, gateway: string): string {
  const rec: WriterRecord = { ...(writer.secretHash ? { secretHash: writer.secretHash } : {}), clientId: writer.clientId, since: new Date().toISOString(), gateway };
  return JSON.stringify(rec);
}

/** The record, or undefined when it is absent or not one (an older or foreign value). */
export function parseWriterRecord(text: string | null): WriterRecord | undefined {
  if (text === null) return undefined;
  try {
    const o = JSON.parse(text) as Partial<WriterRecord>;
    return typeof o.gateway === 'string' && typeof o.clientId === 'string' ? (o as WriterRecord) : undefined;
  } catch {
    return undefined;
  }
}

/** The lock held by `owner` was taken for the writer whose secret hashes to `secretHash`. */
export function heldFor(rec: WriterRecord | undefined, owner: string, secretHash: string): boolean {
  if (!rec?.secretHash || rec.gateway !== owner) return false;
  const a = Buffer.from(rec.secretHash, 'hex');
  const b = Buffer.from(secretHash, 'hex');
  return a.length === 32 && b.length === 32 && timingSafeEqual(a, b);
}
