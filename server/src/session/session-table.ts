import { Session, type SessionOrigin } from './session.js';

/**
 * Sessions by id, and the writer session of each export. A session is dropped `graceMs` after
 * its last connection was lost, or at once when its client closed cleanly.
 */
export class SessionTable {
  private readonly sessions = new Map<string, Session>();
  /** Export name -> the one session that may write to it, until that session ends. */
  private readonly writers = new Map<string, Session>();

  /** Called when an export's writer session is dropped (a cluster-wide lock goes with it). */
  onWriterGone: (exportName: string) => void = () => {};

  constructor(readonly graceMs: number) {}

  create(exportName: string, clientId: string, origin: SessionOrigin = {}): Session {
    const s = new Session(exportName, clientId, origin);
    this.sessions.set(s.id, s);
    return s;
  }

  find(id: string, exportName: string): Session | undefined {
    const s = this.sessions.get(id);
    return s && s.exportName === exportName && !s.ended ? s : undefined;
  }

  /** The session holding the export's writer lock. */
  writerOf(exportName: string): Session | undefined {
    return this.writers.get(exportName);
  }

  /** Makes `s` its export's writer (the caller checked that there is none). */
  claimWriter(s: Session): void {
    this.writers.set(s.exportName, s);
  }

  /**
   * The owner connection closed. A clean close (the client said goodbye) ends the session; a
   * lost connection keeps it for the grace period so the client can resume. Either way the
   * session goes (and its writer lock with it) only once its operations have drained.
   */
  release(s: Session, owner: unknown, clean = false): void {
    if (s.owner !== owner) return;
    s.owner = null;
    s.disconnectedAt = Date.now();
    if (clean) {
      this.remove(s);
      void s.drained().then(() => this.forget(s));
      return;
    }
    s.expireAfter(this.graceMs, () => {
      void s.drained().then(() => {
        if (s.owner === null) this.forget(s);
      });
    });
  }

  /**
   * Ends a session at once: it can no longer be resumed. It stays in the table (drained() waits
   * for it, its writer lock holds) until forget().
   */
  remove(s: Session): void {
    s.ended = true;
    s.owner = null;
    s.cancelExpiry();
  }

  /** Drops a session and its writer lock (once nothing of it runs). */
  forget(s: Session): void {
    this.remove(s);
    if (this.sessions.get(s.id) === s) this.sessions.delete(s.id);
    if (this.writers.get(s.exportName) === s) {
      this.writers.delete(s.exportName);
      this.onWriterGone(s.exportName);
    }
  }

  /** Live sessions per export: connected, or lost and waiting for their client to resume. */
  countByExport(): Map<string, { connected: number; detached: number }> {
    const out = new Map<string, { connected: number; detached: number }>();
    for (const s of this.sessions.values()) {
      if (s.ended) continue;
      const c = out.get(s.exportName) ?? { connected: 0, detached: 0 };
      if (s.owner) c.connected++;
      else c.detached++;
      out.set(s.exportName, c);
    }
    return out;
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Resolves once no backend operation of any session is running. */
  async drained(): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.drained()));
  }

  clear(): void {
    for (const s of this.sessions.values()) s.cancelExpiry();
    this.sessions.clear();
    this.writers.clear();
  }
}
