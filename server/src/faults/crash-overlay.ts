// The crash fault's layer, as lazyfs does it: while an export has a crash fault, writes land in
// an overlay in memory, not on the backend; reads see the overlay over the backend. FLUSH moves
// the overlay to the backend (then flushes it), a FUA write goes straight to the backend, and a
// crash drops the overlay: exactly the writes never made durable are lost.
import type { Backend, RequestContext } from '../backend/backend.js';
import { ExtentMap } from './extent-map.js';
import type { CrashReport, ExportFaults } from './fault-table.js';

export class CrashOverlay implements Backend {
  /** Writes not flushed. Replaced, never emptied in place: a read keeps the maps it started with. */
  private pending = new ExtentMap();
  /** Writes a flush is moving to the backend (still read from here until they are there). */
  private committing: ExtentMap | null = null;
  private commitDone: Promise<void> = Promise.resolve();

  constructor(private readonly inner: Backend, private readonly view: ExportFaults) {
    view.crash = () => this.crash();
  }

  get info() { return this.inner.info; }
  get description() { return this.inner.description; }

  /** Writes stay in memory while a crash fault is set, and until what they left there is on the backend. */
  private get volatile(): boolean {
    return (this.view.active && this.view.has('crash')) || this.pending.size > 0 || this.committing !== null;
  }

  /** Called after every change of faults: with the crash fault gone, the overlay goes to the backend. */
  settle(): void {
    if (!this.view.has('crash') && this.pending.size > 0) void this.commit().catch(() => {});
  }

  private crash(): CrashReport {
    const report = { writes: this.pending.writes, bytes: this.pending.bytes };
    this.pending = new ExtentMap();
    return report;
  }

  async read(ctx: RequestContext, offset: number, length: number): Promise<Buffer> {
    if (!this.volatile) return this.inner.read(ctx, offset, length);
    const layers = [this.committing, this.pending].filter((m): m is ExtentMap => m !== null && m.overlaps(offset, offset + length));
    const base = await this.inner.read(ctx, offset, length);
    if (layers.length === 0) return base;
    // The backend's buffer may be its own memory: never write over it.
    const out = Buffer.from(base);
    for (const m of layers) m.apply(out, offset);
    return out;
  }

  async write(ctx: RequestContext, offset: number, data: Buffer, fua: boolean): Promise<void> {
    if (!this.volatile) return this.inner.write(ctx, offset, data, fua);
    if (!fua) return void this.pending.put(offset, data.length, Buffer.from(data));
    // Durable now: older overlay writes under it must not land over it later.
    await this.commitDone;
    this.pending.cut(offset, offset + data.length);
    return this.inner.write(ctx, offset, data, true);
  }

  async writeZeroes(ctx: RequestContext, offset: number, length: number, noUnmap: boolean, fua: boolean): Promise<void> {
    if (!this.volatile) return this.inner.writeZeroes(ctx, offset, length, noUnmap, fua);
    if (!fua) return void this.pending.put(offset, length, null);
    await this.commitDone;
    this.pending.cut(offset, offset + length);
    return this.inner.writeZeroes(ctx, offset, length, noUnmap, true);
  }

  async discard(ctx: RequestContext, offset: number, length: number): Promise<void> {
    if (!this.volatile) return this.inner.discard(ctx, offset, length);
    this.pending.put(offset, length, null);
  }

  async flush(ctx: RequestContext): Promise<void> {
    if (this.volatile) await this.commit(ctx);
    return this.inner.flush(ctx);
  }

  /** Moves the overlay as it is now to the backend (one commit at a time, in order). */
  private commit(ctx: RequestContext = { session: 'crash-overlay', epoch: 0, seq: 0 }): Promise<void> {
    const run = this.commitDone.then(async () => {
      if (this.pending.size === 0) return;
      const batch = this.pending;
      this.committing = batch;
      this.pending = new ExtentMap();
      const entries = batch.entries();
      let i = 0;
      try {
        for (; i < entries.length; i++) {
          const e = entries[i]!;
          if (e.data) await this.inner.write(ctx, e.start, e.data, false);
          else await this.inner.writeZeroes(ctx, e.start, e.end - e.start, false, false);
        }
      } catch (err) {
        // What did not reach the backend stays volatile, under the writes made since.
        const back = new ExtentMap();
        for (const e of [...entries.slice(i), ...this.pending.entries()]) back.put(e.start, e.end - e.start, e.data);
        this.pending = back;
        throw err;
      } finally {
        this.committing = null;
      }
    });
    this.commitDone = run.catch(() => {});
    return run;
  }

  readMeta(): Promise<Buffer | null> {
    return this.inner.readMeta();
  }

  writeMeta(data: Buffer): Promise<void> {
    return this.inner.writeMeta(data);
  }

  /** A clean stop keeps what was written, as a clean unmount would. */
  async close(): Promise<void> {
    await this.commit().catch(() => {});
    return this.inner.close();
  }
}
