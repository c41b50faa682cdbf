import type { BlockTarget } from '../target.js';

/** What the daemon needs of a frontend (NBD export, ublk device). */
export interface Frontend {
  readonly kind: 'nbd' | 'ublk';
  /** What `connect` prints: /dev/ublkbN or an nbd+unix:// URI. */
  readonly device: string;
  /** Requests taken from the frontend and not yet completed. */
  readonly outstanding?: number;
  /** Extra fields for `wsblk list`. */
  status?(): Record<string, unknown>;
  /** Stops taking requests, waits for outstanding ones, releases the device. */
  close(): Promise<void>;
}

export type FrontendFactory = (target: BlockTarget) => Promise<Frontend>;
