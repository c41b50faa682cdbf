import type { BlockTarget } from '../target.js';
import type { SetRecord } from './membership.js';

/**
 * What a replica set needs of one replica: a BlockTarget (a RemoteDisk to one server) plus its
 * membership record, region checksums, and a way to drop what it holds. The set never knows
 * whether a socket or a test double answers.
 */
export interface ReplicaLink extends BlockTarget {
  /** The replica's id: its URL without credentials. */
  readonly id: string;
  /** Connected to its server now (requests sent to a disconnected link wait for it). */
  readonly connected: boolean;
  /** The membership record kept next to the replica's data, or null when it has none. */
  readMeta(): Promise<SetRecord | null>;
  /** Writes the record atomically and durably on the replica's server; rejects on failure. */
  writeMeta(record: SetRecord): Promise<void>;
  /** One digest per `chunk` bytes of [offset, offset + length), concatenated. */
  checksum(offset: number, length: number): Promise<Buffer>;
  /**
   * Fails every request the link holds with `status`, at once, and never sends them again (an
   * ejected replica must not receive an old write after resync copied the region). It drops
   * the connection and resumes its session on a new one, so the server fences the old
   * connection (waits out everything it started) before any later request runs.
   */
  abandon(status: number): void;
  /**
   * Called on each (re)connection and loss. `sessionLost`: connected again, but the server no
   * longer knew our session (it restarted): what it had not flushed may be gone.
   */
  onState(fn: (connected: boolean, sessionLost?: boolean) => void): void;
  close(): Promise<void>;
}
