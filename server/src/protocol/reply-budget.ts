/** A connection's part of the budget: what it owes now (READ data running, replies queued, bytes on its socket). */
export interface Debtor {
  owed(): number;
  /** Budget may have freed: start what it holds, if it now fits. */
  retry(): void;
}

/**
 * How a socket that drains below its high-water mark is noticed: it emits no 'drain', so
 * while anything waits the debts are looked at again this often.
 */
const RECHECK_MS = 20;

/**
 * The bound on reply bytes the server owes, per connection and over all of them. A connection
 * asks before it starts a READ (fits()); over a bound it holds its requests and stops reading
 * its socket until its debt or the total falls (a completion, a drain, or the recheck timer).
 */
export class ReplyBudget {
  private readonly debtors = new Map<Debtor, number>();
  private total = 0;
  private readonly waiting = new Set<Debtor>();
  private timer: NodeJS.Timeout | undefined;
  private waking = false;

  constructor(readonly perConnection: number, readonly overall: number) {}

  join(d: Debtor): void {
    this.debtors.set(d, 0);
  }

  leave(d: Debtor): void {
    this.total -= this.debtors.get(d) ?? 0;
    this.debtors.delete(d);
    this.waiting.delete(d);
    this.wake();
  }

  /** Records what `d` owes now (called when it changes); wakes the waiting when it fell. */
  update(d: Debtor): number {
    const was = this.debtors.get(d);
    if (was === undefined) return 0;
    const now = d.owed();
    this.debtors.set(d, now);
    this.total += now - was;
    if (now < was && this.waiting.size) this.wake();
    return now;
  }

  /**
   * Whether `d` may start a READ of `bytes` now (its debt is brought up to date first). A
   * connection that owes nothing may always start one: clients that read their replies are not
   * starved by ones that do not, and the total may pass `overall` by one request per connection.
   */
  fits(d: Debtor, bytes: number): boolean {
    const own = this.update(d);
    return own === 0 || (own + bytes <= this.perConnection && this.total + bytes <= this.overall);
  }

  /** `d` holds requests: retry() it when budget frees. */
  wait(d: Debtor): void {
    this.waiting.add(d);
    if (!this.timer) {
      this.timer = setInterval(() => this.recheck(), RECHECK_MS);
      this.timer.unref();
    }
  }

  done(d: Debtor): void {
    this.waiting.delete(d);
    if (this.waiting.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Bytes owed over all connections, as last recorded. */
  get owed(): number {
    return this.total;
  }

  private recheck(): void {
    for (const d of this.debtors.keys()) this.update(d);
    this.wake();
  }

  private wake(): void {
    // A retry starts requests, which update() debts, which would wake again: once is enough.
    if (this.waking) return;
    this.waking = true;
    try {
      for (const d of [...this.waiting]) d.retry();
    } finally {
      this.waking = false;
    }
  }
}
