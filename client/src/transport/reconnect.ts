// When to try a server again: capped exponential backoff, jitter, and when to give up.

export interface BackoffOptions {
  /** First delay and cap (ms). */
  initialMs: number;
  maxMs: number;
  /** Spread each delay over 0.75x-1.25x, so many clients of one restarted server do not retry in lockstep. */
  jitter: boolean;
  /** Give up this long after the first try (ms); 0 = never. */
  giveUpAfterMs: number;
}

/** The margin kept before the deadline: a try that could not even start is not worth a sleep. */
const DEADLINE_MARGIN_MS = 200;

/** One run of tries: each failure asks for the next delay, or undefined when it is time to give up. */
export class Backoff {
  private attempt = 0;
  private startedAt = Date.now();
  private deadline: number;

  constructor(private readonly o: BackoffOptions) {
    this.deadline = o.giveUpAfterMs > 0 ? this.startedAt + o.giveUpAfterMs : Infinity;
  }

  /** A success: the next failure starts over from the first delay and a fresh deadline. */
  reset(): void {
    this.attempt = 0;
    this.startedAt = Date.now();
    this.deadline = this.o.giveUpAfterMs > 0 ? this.startedAt + this.o.giveUpAfterMs : Infinity;
  }

  /** ms since the first try of this run. */
  get elapsedMs(): number {
    return Date.now() - this.startedAt;
  }

  /** ms left before giving up (Infinity: never). */
  get leftMs(): number {
    return this.deadline - Date.now();
  }

  /** How long to wait before the next try, or undefined: give up. Never sleeps past the deadline. */
  next(): number | undefined {
    const left = this.leftMs - DEADLINE_MARGIN_MS;
    if (left <= 0) return undefined;
    const delay = Math.min(this.o.maxMs, this.o.initialMs * 2 ** Math.min(this.attempt++, 20));
    const spread = this.o.jitter ? Math.round(delay * (0.75 + Math.random() * 0.5)) : delay;
    return Math.min(spread, left);
  }
}
