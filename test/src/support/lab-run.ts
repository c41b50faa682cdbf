// `wsblk lab run` as the CLI runs it, and what it leaves: its exit code, output, results.json.
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
export async function labRun(t: TestContext, scenario: string, extra: string[] = []): Promise<LabOutcome> {
  const folder = join(tempDir(t, 'wsblk-lab-'), 'results');
  const r = await wsblk(['lab', 'run', scenario, '--out', folder, ...extra], {}, 240_000);
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
