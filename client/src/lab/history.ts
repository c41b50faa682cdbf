// The history check: a writer of ours beside fio, on a region fio does not touch. Each write is
// a numbered pattern on one block; every acknowledged write is recorded, and at the end each
// block must read back as its last acknowledged write (or as a later write that failed, which
// may or may not have landed). A lost or stale acknowledged write shows up as a mismatch.
import { NbdClient } from './nbd-client.js';

const MAGIC = Buffer.from('WSBLKLAB');
const BLOCK = 4096;

export interface HistoryResult {
  acknowledged: number;
  failed: number;
  blocksChecked: number;
  mismatches: string[];
  /** Set when the writer or the read-back could not run at all. */
  error?: string;
}

/** The bytes of write `seq` on `block`: a header naming both, then a fill drawn from seq. */
export function historyBlock(block: number, seq: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  MAGIC.copy(b, 0);
  b.writeUInt32BE(block, 8);
  b.writeUInt32BE(seq, 12);
  let x = (seq * 2654435761) ^ (block + 1) | 1;
  for (let i = 16; i < BLOCK; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    b.writeInt32LE(x | 0, i);
  }
  return b;
}

export class HistoryWriter {
  /** block -> the seq of its last acknowledged write. */
  private readonly acked = new Map<number, number>();
  /** block -> seqs written after the last ack that failed: each may or may not be on disk. */
  private readonly maybe = new Map<number, number[]>();
  private seq = 0;
  private failed = 0;
  private stopping = false;
  private done: Promise<void> = Promise.resolve();
  private error: string | undefined;
  private readonly blocks: number;

  constructor(private readonly socket: string, private readonly offset: number, bytes: number, private readonly gapMs = 20) {
    this.blocks = Math.floor(bytes / BLOCK);
  }

  /** Writes acknowledged so far (for the progress line). */
  ackCount = 0;

  start(): void {
    this.done = this.loop();
  }

  /** Stops after the write in flight (it may wait for quorum: at most timeoutMs). */
  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.done, new Promise((r) => { timer = setTimeout(r, timeoutMs); })]);
    clearTimeout(timer);
  }

  private async loop(): Promise<void> {
    let nbd: NbdClient;
    try {
      nbd = await NbdClient.open(this.socket);
    } catch (e) {
      this.error = `the history writer could not connect: ${(e as Error).message}`;
      return;
    }
    try {
      while (!this.stopping) {
        const block = Math.floor(Math.random() * this.blocks);
        const seq = ++this.seq;
        let err: number;
        try {
          err = await nbd.write(this.offset + block * BLOCK, historyBlock(block, seq));
        } catch (e) {
          // The connection is gone with the write in flight: it may have landed.
          this.maybe.set(block, [...(this.maybe.get(block) ?? []), seq]);
          this.failed++;
          this.error = `the history writer lost its connection: ${(e as Error).message}`;
          return;
        }
        if (err === 0) {
          this.acked.set(block, seq);
          this.maybe.delete(block);
          this.ackCount++;
        } else {
          this.maybe.set(block, [...(this.maybe.get(block) ?? []), seq]);
          this.failed++;
        }
        await new Promise((r) => setTimeout(r, this.gapMs));
      }
    } finally {
      nbd.close();
    }
  }

  /** Reads every block written back over a new connection and compares it with the record. */
  async check(): Promise<HistoryResult> {
    const out: HistoryResult = { acknowledged: this.ackCount, failed: this.failed, blocksChecked: 0, mismatches: [] };
    let nbd: NbdClient;
    try {
      nbd = await NbdClient.open(this.socket);
    } catch (e) {
      return { ...out, error: `cannot read the history back: ${(e as Error).message}` };
    }
    try {
      const touched = [...new Set([...this.acked.keys(), ...this.maybe.keys()])].sort((a, b) => a - b);
      for (const block of touched) {
        const r = await nbd.readAt(this.offset + block * BLOCK, BLOCK);
        out.blocksChecked++;
        const acked = this.acked.get(block);
        const allowed = [...(acked !== undefined ? [acked] : []), ...(this.maybe.get(block) ?? [])];
        if (r.error !== 0 || !r.data) {
          out.mismatches.push(`block ${block} (offset ${this.offset + block * BLOCK}): read failed with NBD error ${r.error}`);
          continue;
        }
        const found = r.data.subarray(0, 8).equals(MAGIC) ? r.data.readUInt32BE(12) : undefined;
        const ok = (found !== undefined && allowed.includes(found) && r.data.equals(historyBlock(block, found)))
          || (acked === undefined && r.data.every((x) => x === 0));
        if (!ok) {
          out.mismatches.push(`block ${block} (offset ${this.offset + block * BLOCK}): expected write #${acked ?? 'none'}`
            + `${allowed.length > 1 || acked === undefined ? ` (or one of #${allowed.join(', #')})` : ''}, found ${found !== undefined ? `write #${found}${r.data.equals(historyBlock(block, found)) ? '' : ' (damaged)'}` : 'other bytes'}`);
        }
      }
    } catch (e) {
      out.error = `the read-back stopped: ${(e as Error).message}`;
    } finally {
      nbd.close();
    }
    if (this.error) out.error ??= this.error;
    return out;
  }
}
