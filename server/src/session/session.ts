import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Op } from '@wsblk/shared';
import { ReplayWindow } from './replay-window.js';

/** A connection that owns a session; fenced when another takes the session over. */
export interface SessionOwner {
  fence(reason?: string): void;
}

/** Who opened a session, from its hello. */
export interface SessionOrigin {
  /** The session's secret as the client sent it; only its hash is kept. */
  secret?: string;
  host?: string;
  /** A read-only session never writes and never holds the export's writer lock. */
  readOnly?: boolean;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

/** sha256 of a session secret, hex: what a gateway may record (an RBD lock's writer), never the secret. */
export const secretHashOf = (secret: string): string => sha256(secret).toString('hex');

/**
 * A client's session: it outlives a connection for a grace period so the client can resume.
 * The session is also the fence: every backend operation runs between begin() and end(), and
 * a resuming connection waits for drained() before it is welcomed, so nothing a fenced
 * (older-epoch) connection started can land after what the newer connection sends.
 */
export class Session {
  readonly id = randomBytes(16).toString('hex');
  epoch = 0;
  /** The connection that currently owns the session (its epoch is `epoch`). */
  owner: SessionOwner | null = null;
  /** Highest request sequence number seen + 1. */
  nextSeq = 0;
  /** Ended (clean close, taken over by a steal): never resumed again. */
  ended = false;
  /** Date.now() when the last connection went away (0 while one is connected). */
  disconnectedAt = 0;
  readonly host: string;
  readonly readOnly: boolean;
  /** sha256 of the secret, or undefined: a session made without one resumes without one. */
  private readonly secretHash: Buffer | undefined;
  private active = 0;
  private drainWaiters: Array<() => void> = [];
  private readonly window = new ReplayWindow();
  private expiry: NodeJS.Timeout | undefined;

  constructor(readonly exportName: string, readonly clientId: string, origin: SessionOrigin = {}) {
    this.host = origin.host ?? '';
    this.readOnly = origin.readOnly ?? false;
    this.secretHash = origin.secret === undefined ? undefined : sha256(origin.secret);
  }

  /** The session was made with this very secret (not merely "has none"): the same client's. */
  madeWith(secret: string | undefined): boolean {
    return this.secretHash !== undefined && secret !== undefined && timingSafeEqual(sha256(secret), this.secretHash);
  }

  /** Whether a resume that presents `secret` may take this session. */
  secretMatches(secret: string | undefined): boolean {
    if (this.secretHash === undefined) return true;
    if (secret === undefined) return false;
    return timingSafeEqual(sha256(secret), this.secretHash);
  }

  begin(): void {
    this.active++;
  }

  end(): void {
    if (--this.active === 0 && this.drainWaiters.length) {
      const w = this.drainWaiters;
      this.drainWaiters = [];
      for (const f of w) f();
    }
  }

  get activeCount(): number {
    return this.active;
  }

  /** Resolves once no backend operation of this session is running. */
  drained(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Records the status of an applied (non-read) request, and what it was. */
  remember(seq: number, status: number, op: Op = Op.Write, offset = 0, length = 0): void {
    this.window.remember(seq, status, op, offset, length);
  }

  /** The status of a request already applied, if it is still in the window. */
  recall(seq: number): number | undefined {
    return this.window.recall(seq);
  }

  /** How a replay differs from the request applied under its seq ('' if it does not). */
  replayDifference(seq: number, op: Op, offset: number, length: number): string {
    return this.window.difference(seq, op, offset, length);
  }

  /** Takes over from the current owner: bumps the epoch and fences the old connection. */
  takeOver(owner: SessionOwner): number {
    const old = this.owner;
    this.owner = owner;
    this.epoch++;
    this.disconnectedAt = 0;
    this.cancelExpiry();
    if (old && old !== owner) old.fence();
    return this.epoch;
  }

  expireAfter(ms: number, onExpire: () => void): void {
    this.cancelExpiry();
    this.expiry = setTimeout(onExpire, ms);
    this.expiry.unref();
  }

  cancelExpiry(): void {
    if (this.expiry) clearTimeout(this.expiry);
    this.expiry = undefined;
  }
}
