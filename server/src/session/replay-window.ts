/** How many applied request ids a session remembers to answer replays without re-applying. */
const DEDUP_WINDOW = 4096;

/** Slots of the direct index: a power of two, twice the window. */
const INDEX_SIZE = DEDUP_WINDOW * 2;
const INDEX_MASK = INDEX_SIZE - 1;

/**
 * The last DEDUP_WINDOW applied (non-read) requests of a session: seq -> status, and what the
 * request was (op, offset, length), so a replay that asks for something else is caught. Typed
 * arrays in a ring hold the records, oldest first from `pos` once the ring is full. A seq's
 * place in the ring is found in a direct index by the seq's low bits: a session's seqs come
 * nearly in order, so the live ones rarely share a slot; one whose slot is taken goes to a Map
 * instead (seqs spread wider than the index, as when reads come between the writes). The Map
 * alone was a tenth of the server's busy time under 4k random writes (its get, set and delete
 * per write); probing a hash table of sequential keys instead scans one long run per delete.
 */
export class ReplayWindow {
  /** Ring position + 1 of the seq in each slot (slot: the seq's low bits); 0: an empty slot. */
  private readonly index = new Int32Array(INDEX_SIZE);
  /** Ring positions of live seqs whose slot was taken when they came. */
  private readonly overflow = new Map<number, number>();
  /** The seq in each ring position. */
  private readonly seqs = new Float64Array(DEDUP_WINDOW);
  private readonly statuses = new Int32Array(DEDUP_WINDOW);
  private readonly ops = new Uint8Array(DEDUP_WINDOW);
  private readonly offsets = new Float64Array(DEDUP_WINDOW);
  private readonly lengths = new Float64Array(DEDUP_WINDOW);
  private len = 0;
  private pos = 0;

  remember(seq: number, status: number, op: number, offset: number, length: number): void {
    let slot = this.find(seq);
    if (slot < 0) {
      slot = this.pos;
      if (this.len === DEDUP_WINDOW) this.unindex(this.seqs[slot]!);
      else this.len++;
      this.pos = (this.pos + 1) % DEDUP_WINDOW;
      this.seqs[slot] = seq;
      this.insert(seq, slot);
    }
    this.statuses[slot] = status;
    this.ops[slot] = op;
    this.offsets[slot] = offset;
    this.lengths[slot] = length;
  }

  /** The status of a request already applied, if it is still in the window. */
  recall(seq: number): number | undefined {
    const slot = this.find(seq);
    return slot < 0 ? undefined : this.statuses[slot];
  }

  /**
   * How a replay of `seq` differs from the request applied under it ('' when it is the same
   * request, or unknown).
   */
  difference(seq: number, op: number, offset: number, length: number): string {
    const slot = this.find(seq);
    if (slot < 0) return '';
    const was = { op: this.ops[slot]!, offset: this.offsets[slot]!, length: this.lengths[slot]! };
    if (was.op === op && was.offset === offset && was.length === length) return '';
    return `seq ${seq} was op ${was.op} ${was.offset}+${was.length}, replayed as op ${op} ${offset}+${length}`;
  }

  /** The ring position of `seq`, or -1. */
  private find(seq: number): number {
    const at = this.index[home(seq)]!;
    if (at !== 0 && this.seqs[at - 1] === seq) return at - 1;
    return this.overflow.size === 0 ? -1 : this.overflow.get(seq) ?? -1;
  }

  private insert(seq: number, slot: number): void {
    const h = home(seq);
    if (this.index[h] === 0) this.index[h] = slot + 1;
    else this.overflow.set(seq, slot);
  }

  private unindex(seq: number): void {
    const h = home(seq);
    const at = this.index[h]!;
    if (at !== 0 && this.seqs[at - 1] === seq) this.index[h] = 0;
    else this.overflow.delete(seq);
  }
}

/** A seq's slot in the direct index: its low bits (seqs are integers below 2^53). */
function home(seq: number): number {
  return (seq % INDEX_SIZE) & INDEX_MASK;
}
