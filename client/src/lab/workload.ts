// The workload: fio with verify over the device's NBD socket (the nbd ioengine), for the
// workload's runtime; written blocks are read back and checked while it runs (verify_backlog).
import { spawn, type ChildProcess } from 'node:child_process';
import type { LabFioSummary } from './results.js';
import type { FioWorkload } from './scenario.js';

export interface FioOutcome {
  /** fio's exit code (null: killed). */
  code: number | null;
  summary?: LabFioSummary;
  /** The end of fio's output, for a failed check. */
  tail: string;
}

const perS = (ios: unknown, ms: unknown): number => (Number(ms) > 0 ? (Number(ios) || 0) / (Number(ms) / 1000) : 0);
const EILSEQ = 84; // what fio's job error is when a verify failed

export function fioArgs(w: FioWorkload, socket: string, size: number, runtimeS: number): string[] {
  const args = ['--output-format=json', '--name=lab', '--ioengine=nbd', `--uri=nbd+unix:///?socket=${socket}`, `--rw=${w.rw}`,
    `--bs=${w.bs}`, `--iodepth=${w.iodepth}`, `--size=${size}`, '--time_based', `--runtime=${runtimeS}`, '--random_generator=tausworthe64'];
  if (w.verify !== 'none') {
    // The backlog verifies what was written every 256 blocks; overwrites are tracked by fio.
    args.push(`--verify=${w.verify}`, '--do_verify=1', '--verify_fatal=1', '--verify_backlog=256', '--verify_state_save=0');
  }
  return args;
}

export class FioRun {
  readonly child: ChildProcess;
  readonly done: Promise<FioOutcome>;

  constructor(w: FioWorkload, socket: string, size: number, runtimeS: number) {
    this.child = spawn('fio', fioArgs(w, socket, size, runtimeS), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    this.done = new Promise((resolve) => {
      this.child.once('error', (e) => resolve({ code: null, tail: `cannot run fio: ${e.message}` }));
      this.child.once('close', (code) => resolve({ code, ...parseFio(out), tail: out.slice(-3000) }));
    });
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** fio's JSON output (after any notes it prints first) as the run's summary. */
export function parseFio(out: string): { summary?: LabFioSummary } {
  const start = out.indexOf('{');
  let json: { jobs?: Array<Record<string, any>> }; // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    json = JSON.parse(out.slice(start, out.lastIndexOf('}') + 1));
  } catch {
    return {};
  }
  const jobs = json.jobs ?? [];
  const sum = (pick: (j: Record<string, any>) => number) => jobs.reduce((n, j) => n + (Number(pick(j)) || 0), 0); // eslint-disable-line @typescript-eslint/no-explicit-any
  const verifyErrors = jobs.filter((j) => j.error === EILSEQ).length;
  return {
    summary: {
      errors: sum((j) => (j.error ? 1 : 0) + (j.total_err ?? 0)),
      // fio's own read iops is skewed by verify reads timed apart: ios over the job's run time instead.
      readIops: Math.round(sum((j) => perS(j.read?.total_ios, j.job_runtime))), writeIops: Math.round(sum((j) => perS(j.write?.total_ios, j.job_runtime))),
      readBytes: sum((j) => j.read?.io_bytes), writeBytes: sum((j) => j.write?.io_bytes),
      ...(verifyErrors > 0 && { verifyErrors }),
    },
  };
}
