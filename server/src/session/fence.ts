import type { Session, SessionOwner } from './session.js';
import type { SessionTable } from './session-table.js';

/**
 * The epoch fence: `owner` takes the session over (its older connection is fenced) and must
 * wait for `drained` before it runs anything, so nothing an older epoch started can land after
 * what the new connection sends.
 */
export function takeOverFenced(session: Session, owner: SessionOwner): { epoch: number; drained: Promise<void> } {
  const epoch = session.takeOver(owner);
  return { epoch, drained: session.drained() };
}

/**
 * The steal fence: ends another session for good. Its connection is closed with `reason`, it can
 * no longer be resumed, and once its running operations have drained it is dropped with its
 * writer lock; only then may the thief write.
 */
export async function evict(sessions: SessionTable, victim: Session, reason: string): Promise<void> {
  const owner = victim.owner;
  sessions.remove(victim);
  owner?.fence(reason);
  await victim.drained();
  sessions.forget(victim);
}
