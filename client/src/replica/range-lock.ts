/**
 * Orders overlapping writes: a range is granted once every range acquired before it that
 * overlaps it has been released. Ranges that overlap nothing earlier are granted at once, so
 * writes to different blocks still run in parallel. A replica set holds a write's range until
 * every replica has answered it, so two overlapping writes reach every replica in the same
 * order (a server runs the requests of one batch in parallel: without this, replicas could
 * apply them in different orders and diverge). Resync holds the range it copies, so
 * application writes wait only on the region being copied.
 */
export interface RangeHold {
  readonly offset: number;
  readonly end: number;
}

interface Entry extends RangeHold {
  /** Earlier, unreleased entries that overlap this one. */
  blockers: number;
  granted: (() => void) | null;
}

export class RangeLock {
  /** Unreleased entries in the order they were acquired (granted or waiting). */
  private entries: Entry[] = [];

  /** Entries held or waiting. */
  get size(): number {
    return this.entries.length;
  }

  /**
   * Acquires [offset, offset + length). Returns the hold and whether it is granted now; if not,
   * `granted` runs once it is (from a later release()). Release every hold exactly once.
   */
  acquire(offset: number, length: number, granted: () => void): { hold: RangeHold; now: boolean } {
    const end = offset + length;
    let blockers = 0;
    for (const e of this.entries) if (e.offset < end && offset < e.end) blockers++;
    const entry: Entry = { offset, end, blockers, granted: blockers === 0 ? null : granted };
    this.entries.push(entry);
    return { hold: entry, now: blockers === 0 };
  }

  /** Releases a hold; ranges that waited only on it are granted, in the order they came. */
  release(hold: RangeHold): void {
    const i = this.entries.indexOf(hold as Entry);
    if (i < 0) throw new Error(`range ${hold.offset}+${hold.end - hold.offset} released twice`);
    this.entries.splice(i, 1);
    const ready: Array<() => void> = [];
    for (let j = i; j < this.entries.length; j++) {
      const e = this.entries[j]!;
      if (e.offset < hold.end && hold.offset < e.end && --e.blockers === 0 && e.granted) {
        ready.push(e.granted);
        e.granted = null;
      }
    }
    for (const f of ready) f();
  }
}
