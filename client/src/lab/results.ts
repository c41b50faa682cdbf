// The whole record of one lab run, as the runner writes it to results.json and the report reads it.
// Plain JSON: numbers, strings, booleans and null only, so the file round-trips through JSON.parse.
import type { ActionName, DeviceSpec, Workload } from './scenario.js';

/** A replica as the client sees it in one sample. */
export type ReplicaState = 'in-sync' | 'resyncing' | 'ejected' | 'unreachable';
export const REPLICA_STATES: readonly ReplicaState[] = ['in-sync', 'resyncing', 'ejected', 'unreachable'];

export interface LabCheck {
  /** 'fio verify', 'replica compare' or 'acknowledged-write history'. */
  name: string;
  ok: boolean;
  /** One or more lines for a person: what was compared, and the first mismatches when it failed. */
  detail: string;
}

export interface LabSample {
  /** Seconds since startedAt, at the end of the interval the figures cover. */
  t: number;
  readIops: number;
  writeIops: number;
  /** Latency percentiles of the device's requests completed in the interval; null when none completed. */
  p50Ms: number | null;
  p99Ms: number | null;
  replicas: { name: string; url: string; state: ReplicaState; resyncPercent?: number }[];
}

export interface LabFault {
  /** Seconds since startedAt when the runner applied it. */
  t: number;
  /**
   * When it ended: the undoing action (restart after kill or crash, heal, unpartition, resume,
   * clear) or `for` running out; durationS when it was still on at the end. Absent for a moment
   * with no extent (a clear with nothing on, a restart recorded on its own).
   */
  until?: number;
  action: ActionName;
  server: string;
  /** For a person, e.g. 'delay 50 ms ± 10 ms' or the error when the action failed. */
  detail?: string;
}

export interface LabFioSummary {
  /** fio's total error count across its jobs (0 when clean). */
  errors: number;
  readIops: number;
  writeIops: number;
  readBytes: number;
  writeBytes: number;
  /** fio's verify failures, when it reported them apart from other errors. */
  verifyErrors?: number;
}

export interface LabRun {
  /** Bumped when a field changes meaning. */
  version: 1;
  scenario: { name: string; description?: string; file?: string };
  /** ISO 8601, UTC. */
  startedAt: string;
  durationS: number;
  verdict: { ok: boolean; checks: LabCheck[] };
  /** In time order, one per sampling interval. */
  samples: LabSample[];
  /** In order of t. */
  faults: LabFault[];
  servers: { name: string; url: string }[];
  workload: Workload;
  /** The device as the scenario asked for it, and where it appeared (e.g. /dev/nbd0). */
  device: DeviceSpec & { path?: string };
  fio?: LabFioSummary;
}
