import type { Session, SessionOwner } from './session.js';

/**
 * The epoch fence: `owner` takes the session over (its older connection is fenced) and must
 * wait for `drained` before it runs anything, so nothing an older epoch started can land after
 * what the new connection sends.
 */
export function takeOverFenced(session: Session, owner: SessionOwner): { epoch: number; drained: Promise<void> } {
  const epoch = session.takeOver(owner);
  return { epoch, drained: session.drained() };
}
