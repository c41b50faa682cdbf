// `wsblk lab run` as the CLI runs it, and what it leaves: its exit code, output, results.json.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import type { LabRun, LabSample } from '../../../client/dist/lab/results.js';
import { tempDir, wsblk } from './procs.js';

export const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));

export interface LabOutcome {
  code: number;
  stdout: string;
  stderr: string;
  folder: string;
  run: LabRun;
  reportExists: boolean;
}

/** Runs `wsblk lab run SCENARIO --out DIR` (no progress line) and reads its results. */
export async function labRun(t: TestContext, scenario: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<LabOutcome> {
  const folder = join(tempDir(t, 'wsblk-lab-'), 'results');
  const r = await wsblk(['lab', 'run', scenario, '--out', folder, ...extra], env, 240_000);
  const file = join(folder, 'results.json');
  if (!existsSync(file)) throw new Error(`lab run wrote no results.json (exit ${r.code}):\n${r.stdout}\n${r.stderr.slice(-3000)}`);
  const run = JSON.parse(readFileSync(file, 'utf8')) as LabRun;
  return { ...r, folder, run, reportExists: existsSync(join(folder, 'report.html')) };
}

/** One replica's state in each sample, in time order. */
export const statesOf = (run: LabRun, name: string): string[] =>
  run.samples.map((s: LabSample) => s.replicas.find((r) => r.name === name)?.state ?? 'missing');

/** The states in the order they came, repeats folded: ['in-sync', 'unreachable', 'resyncing', 'in-sync']. */
export const stateRuns = (states: string[]): string[] => states.filter((s, i) => i === 0 || s !== states[i - 1]);

/** Samples cover the run every interval: no gap much wider than it. */
export function sampleGaps(run: LabRun, intervalS: number): number[] {
  const ts = run.samples.map((s) => s.t);
  return ts.slice(1).map((t, i) => t - ts[i]!).filter((gap) => gap > intervalS * 1.8);
}

/**
 * One fault, and the replica set's answer to it: `fault` was hit at about `atS` and ended at
 * about `untilS`; `server` went out (unreachable or ejected) and came back in sync; the others
 * stayed in sync all through.
 */
export function assertOutAndBack(run: LabRun, fault: { action: string; server: string; atS: number; untilS: number }, others: string[]): void {
  assert.equal(run.faults.length, 1, `one fault: ${JSON.stringify(run.faults)}`);
  const f = run.faults[0]!;
  assert.deepEqual([f.action, f.server], [fault.action, fault.server]);
  assert.ok(Math.abs(f.t - fault.atS) < 1 && Math.abs(f.until! - fault.untilS) < 2, `${f.action} at ${f.t} s until ${f.until} s`);
  const states = stateRuns(statesOf(run, fault.server));
  assert.equal(states[0], 'in-sync');
  assert.ok(states.some((s) => s === 'unreachable' || s === 'ejected'), `${fault.server} went out: ${states.join(' > ')}`);
  assert.equal(states[states.length - 1], 'in-sync', `${fault.server} came back: ${states.join(' > ')}`);
  for (const other of others) assert.deepEqual(stateRuns(statesOf(run, other)), ['in-sync'], `${other} stayed in sync`);
}
