import { Session } from './session.js';

/** Sessions by id. A session is dropped `graceMs` after its last connection closed. */
export class SessionTable {
  private readonly sessions = new Map<string, Session>();

  constructor(readonly graceMs: number) {}

  create(exportName: string, clientId: string): Session {
    const s = new Session(exportName, clientId);
    this.sessions.set(s.id, s);
    return s;
  }

  find(id: string, exportName: string): Session | undefined {
    const s = this.sessions.get(id);
    return s && s.exportName === exportName ? s : undefined;
  }

  /** The owner connection closed: keep the session for the grace period (after it drains). */
  release(s: Session, owner: unknown): void {
    if (s.owner !== owner) return;
    s.owner = null;
    s.expireAfter(this.graceMs, () => {
      void s.drained().then(() => {
        if (s.owner === null) this.sessions.delete(s.id);
      });
    });
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
  }
}
