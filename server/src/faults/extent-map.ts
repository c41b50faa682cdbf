// Byte ranges written but not yet durable (the crash fault's overlay): non-overlapping extents
// kept in order of offset; a later write over part of an extent trims it. A linear scan is
// enough for experiments (the overlay holds what was written between two flushes).

interface Extent {
  start: number;
  end: number;
  /** The bytes, or null for zeroes (discard, write-zeroes): a large range costs no memory. */
  data: Buffer | null;
  /** Which write it came from (a write trimmed in two is still one). */
  write: number;
}

export class ExtentMap {
  private extents: Extent[] = [];
  private writeCount = 0;

  get size(): number {
    return this.extents.length;
  }

  /** How many writes still have bytes here (the crash report). */
  get writes(): number {
    return new Set(this.extents.map((e) => e.write)).size;
  }

  get bytes(): number {
    let n = 0;
    for (const e of this.extents) n += e.end - e.start;
    return n;
  }

  /** Records `data` (copied by the caller) at `start`, or `length` zero bytes when data is null. */
  put(start: number, length: number, data: Buffer | null): void {
    const write = ++this.writeCount;
    const end = start + length;
    this.cut(start, end);
    let i = 0;
    while (i < this.extents.length && this.extents[i]!.start < start) i++;
    this.extents.splice(i, 0, { start, end, data, write });
  }

  /** Forgets [start, end): that range is now on the backend (a FUA write) or superseded. */
  cut(start: number, end: number): void {
    const kept: Extent[] = [];
    for (const e of this.extents) {
      if (e.end <= start || e.start >= end) {
        kept.push(e);
        continue;
      }
      if (e.start < start) kept.push({ ...e, end: start, data: e.data && e.data.subarray(0, start - e.start) });
      if (e.end > end) kept.push({ ...e, start: end, data: e.data && e.data.subarray(end - e.start) });
    }
    this.extents = kept;
  }

  /** Whether any extent lies in [start, end). */
  overlaps(start: number, end: number): boolean {
    return this.extents.some((e) => e.start < end && e.end > start);
  }

  /** Copies the extents that lie in [offset, offset + out.length) over `out`. */
  apply(out: Buffer, offset: number): void {
    const end = offset + out.length;
    for (const e of this.extents) {
      if (e.end <= offset || e.start >= end) continue;
      const from = Math.max(e.start, offset);
      const to = Math.min(e.end, end);
      if (e.data) e.data.copy(out, from - offset, from - e.start, to - e.start);
      else out.fill(0, from - offset, to - offset);
    }
  }

  entries(): readonly Extent[] {
    return this.extents;
  }
}
