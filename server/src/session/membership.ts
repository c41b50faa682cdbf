import { Errno, ProtocolError, parseSetRecord, type SetRecord } from '@wsblk/shared';
import type { Backend } from '../backend/backend.js';

/** The replica set a connection writes for, as it last told the server (hello or META_WRITE). */
export interface SetView {
  setId: string;
  epoch: number;
}

/**
 * An export's membership record (replica sets) and the fence it gives: a connection whose view
 * of the set is older than the record (another set, or a lower epoch) has its writes refused
 * with ESTALE, as the session fence refuses an older connection. Records are written one at a
 * time, and a record never goes back: a lower epoch of the same set is refused.
 */
export class ExportMembership {
  private record: SetRecord | null = null;
  private loading: Promise<void> | null = null;
  private writing: Promise<unknown> = Promise.resolve();

  constructor(private readonly backend: Backend) {}

  /** Reads the stored record once (before the first set-aware connection is welcomed). */
  load(): Promise<void> {
    return (this.loading ??= this.backend.readMeta().then((raw) => {
      try {
        this.record = raw ? parseSetRecord(raw) : null;
      } catch {
        this.record = null; // a damaged record is no fence; the client decides what to trust
      }
    }, (e: unknown) => {
      this.loading = null; // try again at the next hello
      throw e;
    }));
  }

  /** True when writes from a connection with this view must be refused. */
  isStale(view: SetView | undefined): boolean {
    const r = this.record;
    return view !== undefined && r !== null && (r.setId !== view.setId || r.epoch > view.epoch);
  }

  /** The stored record as it is on disk, or null. */
  read(): Promise<Buffer | null> {
    return this.backend.readMeta();
  }

  /**
   * Stores a record: 0, or an errno (EINVAL: not a record; ESTALE: an older epoch of the set, or
   * the same epoch with other members). Another set's record replaces it (the client checked).
   */
  write(raw: Buffer): Promise<number> {
    const run = async (): Promise<number> => {
      let rec: SetRecord;
      try {
        rec = parseSetRecord(raw);
      } catch (e) {
        if (e instanceof ProtocolError) return Errno.EINVAL;
        throw e;
      }
      await this.load();
      const cur = this.record;
      if (cur && cur.setId === rec.setId) {
        if (rec.epoch < cur.epoch) return Errno.ESTALE;
        if (rec.epoch === cur.epoch && rec.inSync.join('\n') !== cur.inSync.join('\n')) return Errno.ESTALE;
      }
      await this.backend.writeMeta(raw);
      this.record = rec;
      return 0;
    };
    const p = this.writing.then(run, run);
    this.writing = p;
    return p;
  }
}
