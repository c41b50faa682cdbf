// The membership record (shared/src/set-record.ts) each replica keeps next to its data: the
// client bumps the epoch and writes it to every remaining in-sync replica before a write that
// follows an ejection completes, so the highest epoch's list is the truth at attach.
import type { SetRecord } from '@wsblk/shared';

export type { SetRecord };

export interface Attached {
  /** Replicas that serve reads at once. */
  inSync: string[];
  /** Reachable replicas that missed writes (or belong to no set yet): resync before reads. */
  stale: string[];
  setId: string;
  epoch: number;
  /** True when no replica had a record: a new set, made of the first replica's data. */
  created: boolean;
}

/** Why an attach is refused; the message says what to do. */
export class AttachRefused extends Error {
  override name = 'AttachRefused';
}

/**
 * Decides, from the records read from the reachable replicas (null: a replica without one),
 * which replicas are in sync. `forceInSync` names a replica to trust when the records do not
 * settle it (the documented way out). `ids` is every replica of the set in the order given.
 */
export function decideMembership(
  ids: readonly string[],
  records: ReadonlyMap<string, SetRecord | null>,
  newSetId: () => string,
  forceInSync?: string,
  /** The record this client stored last (a restarted daemon): if it is still the newest, it is the truth. */
  known?: SetRecord,
  /** A new set whose replicas are known identical (new, all-zero exports): every one in sync, nothing compared. Only for a new set. */
  assumeClean = false,
): Attached {
  const reachable = ids.filter((id) => records.has(id));
  const withRecord = reachable.filter((id) => records.get(id));
  if (forceInSync !== undefined) {
    if (!ids.includes(forceInSync)) throw new AttachRefused(`--force-in-sync ${forceInSync} is not one of the replicas (${ids.join(', ')})`);
    if (!records.has(forceInSync)) throw new AttachRefused(`--force-in-sync ${forceInSync}: that replica is not reachable`);
    const epochs = withRecord.map((id) => records.get(id)!.epoch);
    const setId = records.get(forceInSync)?.setId ?? withRecord.map((id) => records.get(id)!.setId)[0] ?? newSetId();
    return {
      inSync: [forceInSync], stale: reachable.filter((id) => id !== forceInSync), setId,
      epoch: Math.max(0, ...epochs), created: withRecord.length === 0,
    };
  }
  if (reachable.length === 0) throw new AttachRefused('no replica is reachable');
  if (withRecord.length === 0) {
    // A new set: the first replica's data is the truth (as mdadm --create syncs the first
    // member to the others); the others are compared region by region and copied where they differ.
    if (reachable.length !== ids.length) {
      const missing = ids.filter((id) => !records.has(id));
      throw new AttachRefused(`a new replica set needs every replica reachable; unreachable: ${missing.join(', ')}`);
    }
    // --assume-clean (mdadm's name): the user vouches that they are identical already.
    if (assumeClean) return { inSync: [...ids], stale: [], setId: newSetId(), epoch: 0, created: true };
    return { inSync: [ids[0]!], stale: ids.slice(1), setId: newSetId(), epoch: 0, created: true };
  }
  const sets = new Set(withRecord.map((id) => records.get(id)!.setId));
  if (sets.size > 1) {
    const which = withRecord.map((id) => `${id} (set ${records.get(id)!.setId.slice(0, 8)}, epoch ${records.get(id)!.epoch})`);
    throw new AttachRefused(`the replicas belong to different replica sets: ${which.join('; ')}; `
      + 'use --force-in-sync URL to trust one of them (the others are resynced from it)');
  }
  let top: SetRecord | undefined;
  for (const id of withRecord) {
    const r = records.get(id)!;
    if (!top || r.epoch > top.epoch) top = r;
  }
  const truth = top!;
  // In sync: listed at the highest epoch, and holding that epoch's record itself (a replica
  // listed there whose own record is older missed the change that listed it: it is not trusted).
  const inSync = reachable.filter((id) => truth.inSync.includes(id) && records.get(id)?.epoch === truth.epoch && records.get(id)?.setId === truth.setId);
  // A newer epoch can only live on replicas in sync at this one (a client stores an ejection on
  // the replicas that stay): while one of them is out of reach, so is the truth. Unless this
  // client stored the newest record itself (a restarted daemon finds its own epoch).
  const unseen = truth.inSync.filter((id) => !records.has(id));
  const ownRecord = known !== undefined && known.setId === truth.setId && known.epoch === truth.epoch;
  if (inSync.length > 0 && unseen.length > 0 && !ownRecord) {
    throw new AttachRefused(`cannot tell which replicas are in sync: ${unseen.join(', ')} ${unseen.length > 1 ? 'are' : 'is'} unreachable, `
      + `and ${unseen.length > 1 ? 'they were' : 'it was'} in sync at epoch ${truth.epoch}, so a newer epoch may exist there. `
      + 'Bring it back, or use --force-in-sync URL to trust a reachable replica (writes it missed are lost)');
  }
  if (inSync.length === 0) {
    const missing = truth.inSync.filter((id) => !records.has(id));
    throw new AttachRefused(`no in-sync replica is reachable: at epoch ${truth.epoch} the in-sync replicas are `
      + `${truth.inSync.join(', ')}${missing.length ? ` (unreachable: ${missing.join(', ')})` : ''}; the reachable ones `
      + `missed writes. Bring an in-sync replica back, or use --force-in-sync URL to trust a stale one (writes it missed are lost)`);
  }
  return { inSync, stale: reachable.filter((id) => !inSync.includes(id)), setId: truth.setId, epoch: truth.epoch, created: false };
}
