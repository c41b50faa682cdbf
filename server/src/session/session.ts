import { randomBytes } from 'node:crypto';

/** How many applied request ids a session remembers to answer replays without re-applying. */
const DEDUP_WINDOW = 4096;

/** A connection that owns a session; fenced when another takes the session over. */
export interface SessionOwner {
  fence(reason?: string): void;
}

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
  private active = 0;
  private drainWaiters: Array<() => void> = [];
  private readonly applied = new Map<number, number>();
  /** The ids in `applied`, oldest first from ringPos (a ring: evicting is O(1)). */
  private readonly ring = new Float64Array(DEDUP_WINDOW);
  private ringLen = 0;
  private ringPos = 0;
  private expiry: NodeJS.Timeout | undefined;

  constructor(readonly exportName: string, readonly clientId: string) {}

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

  /** Records the status of an applied (non-read) request. */
  remember(seq: number, status: number): void {
    // Not "delete the Map's first key": deleted entries stay in a Map's table as holes until it
    // is rehashed, so finding the first live key scans them; that was 14 % of the server's busy
    // time under 4k random writes (profile in bench/README.md, lever 11).
    if (this.applied.has(seq)) {
      this.applied.set(seq, status);
      return;
    }
    if (this.ringLen === DEDUP_WINDOW) this.applied.delete(this.ring[this.ringPos]!);
    else this.ringLen++;
    this.ring[this.ringPos] = seq;
    this.ringPos = (this.ringPos + 1) % DEDUP_WINDOW;
    this.applied.set(seq, status);
  }

  /** The status of a request already applied, if it is still in the window. */
  recall(seq: number): number | undefined {
    return this.applied.get(seq);
  }

  /** Takes over from the current owner: bumps the epoch and fences the old connection. */
  takeOver(owner: SessionOwner): number {
    const old = this.owner;
    this.owner = owner;
    this.epoch++;
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
