/** How many applied request ids a session remembers to answer replays without re-applying. */
const DEDUP_WINDOW = 4096;

/**
 * The last DEDUP_WINDOW applied (non-read) requests of a session: seq -> status, and what the
 * request was (op, offset, length), so a replay that asks for something else is caught. Typed
 * arrays in a ring hold the records; the Map holds only seq -> slot.
 */
export class ReplayWindow {
  private readonly slotOf = new Map<number, number>();
  /** The seq in each slot, oldest first from `pos` once the ring is full. */
  private readonly seqs = new Float64Array(DEDUP_WINDOW);
  private readonly statuses = new Int32Array(DEDUP_WINDOW);
  private readonly ops = new Uint8Array(DEDUP_WINDOW);
  private readonly offsets = new Float64Array(DEDUP_WINDOW);
  private readonly lengths = new Float64Array(DEDUP_WINDOW);
  private len = 0;
  private pos = 0;

  remember(seq: number, status: number, op: number, offset: number, length: number): void {
    // Not "delete the Map's first key": deleted entries stay in a Map's table as holes until it
    // is rehashed, so finding the first live key scans them; that was 14 % of the server's busy
    // time under 4k random writes (profile in bench/RESULTS.md, lever 11).
    let slot = this.slotOf.get(seq);
    if (slot === undefined) {
      slot = this.pos;
      if (this.len === DEDUP_WINDOW) this.slotOf.delete(this.seqs[slot]!);
      else this.len++;
      this.pos = (this.pos + 1) % DEDUP_WINDOW;
      this.seqs[slot] = seq;
      this.slotOf.set(seq, slot);
    }
    this.statuses[slot] = status;
    this.ops[slot] = op;
    this.offsets[slot] = offset;
    this.lengths[slot] = length;
  }

  /** The status of a request already applied, if it is still in the window. */
  recall(seq: number): number | undefined {
    const slot = this.slotOf.get(seq);
    return slot === undefined ? undefined : this.statuses[slot];
  }

  /**
   * How a replay of `seq` differs from the request applied under it ('' when it is the same
   * request, or unknown).
   */
  difference(seq: number, op: number, offset: number, length: number): string {
    const slot = this.slotOf.get(seq);
    if (slot === undefined) return '';
    const was = { op: this.ops[slot]!, offset: this.offsets[slot]!, length: this.lengths[slot]! };
    if (was.op === op && was.offset === offset && was.length === length) return '';
    return `seq ${seq} was op ${was.op} ${was.offset}+${was.length}, replayed as op ${op} ${offset}+${length}`;
  }
}
