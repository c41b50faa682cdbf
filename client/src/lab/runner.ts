// Runs one lab scenario from start to verdict: servers, the replica-set device, fio and our
// history writer while the schedule applies faults and the sampler records figures; then the
// device is let settle, the history is read back, the device disconnected and the replicas
// compared. Everything started is stopped at the end, on an error and on abort().
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LabDevice } from './device.js';
import { HistoryWriter } from './history.js';
import { NftPartitions } from './partition.js';
import { Progress } from './progress.js';
import { renderReport } from './report.js';
import type { LabCheck, LabRun } from './results.js';
import { Sampler } from './sampler.js';
import type { Scenario } from './scenario.js';
import { Schedule } from './schedule.js';
import { LabServers } from './servers.js';
import { compareCheck, fioCheck, historyCheck } from './verdict.js';
import { FioRun, type FioOutcome } from './workload.js';

export interface RunOptions {
  /** The results folder (created). */
  folder: string;
  quiet?: boolean;
}

/** Bytes at the end of the device kept for the history writer (fio stays below them). */
export function historyRegion(deviceSize: number): { offset: number; bytes: number } {
  const bytes = Math.min(4 << 20, Math.floor(deviceSize / 8 / 4096) * 4096);
  return { offset: deviceSize - bytes, bytes };
}

/** What a valid scenario asks that the runner cannot do yet, or undefined. */
export function unsupported(sc: Scenario): string | undefined {
  if (sc.workload.kind !== 'fio') return 'the fs workload is not yet supported by `wsblk lab run`; use kind: fio';
  if (sc.device.frontend !== 'nbd') return 'frontend ublk is not yet supported by `wsblk lab run`; use frontend: nbd';
  return undefined;
}

// How long the end waits for every replica to be in sync before comparing them.
const SETTLE_MS = 60_000;

export class LabRunner {
  private readonly servers: LabServers;
  private readonly scratch: string;
  private device: LabDevice | undefined;
  private nft: NftPartitions | undefined;
  private fio: FioRun | undefined;
  private aborted: string | undefined;
  private abortWake: (() => void) | undefined;
  private t0 = 0;

  constructor(private readonly scenario: Scenario, private readonly o: RunOptions) {
    mkdirSync(o.folder, { recursive: true });
    // Sockets live in a short path of their own: a results folder may be too deep for a Unix socket.
    this.scratch = mkdtempSync(join(tmpdir(), 'wsblk-lab-'));
    this.servers = new LabServers(scenario.servers, o.folder, this.scratch, scenario.file);
  }

  /** Stops the run early (Ctrl-C, SIGTERM): run() cleans up and rejects with the reason. */
  abort(reason: string): void {
    this.aborted ??= reason;
    this.fio?.kill();
    this.abortWake?.();
  }

  async run(): Promise<LabRun> {
    try {
      return await this.experiment();
    } finally {
      this.fio?.kill();
      await this.device?.stop(5_000).catch(() => undefined);
      await this.servers.stopAll();
      await this.nft?.close();
      rmSync(this.scratch, { recursive: true, force: true });
    }
  }

  private elapsedS = (): number => (this.t0 === 0 ? 0 : (performance.now() - this.t0) / 1000);

  private check(): void {
    if (this.aborted) throw new Error(this.aborted);
  }

  private async experiment(): Promise<LabRun> {
    const sc = this.scenario;
    const why = unsupported(sc);
    if (why || sc.workload.kind !== 'fio') throw new Error(why);
    const w = sc.workload;
    await this.servers.startAll();
    this.check();
    const replicas = sc.device.servers.map((n) => this.servers.get(n));
    if (sc.schedule.some((a) => a.action === 'partition')) this.nft = await NftPartitions.open();
    const schedule = new Schedule(sc.schedule, this.servers, this.elapsedS, this.nft);
    await schedule.prepare();
    const device = new LabDevice(sc.device, replicas, this.scratch, join(this.o.folder, 'device.log'));
    this.device = device;
    await device.start();
    this.check();
    const sampler = new Sampler(device.control, this.servers, sc.sampleIntervalS, this.elapsedS);
    await this.waitInSync(sampler, SETTLE_MS, 'the new set');

    const deviceSize = replicas[0]!.spec.export.size;
    const region = historyRegion(deviceSize);
    const fioSize = Math.floor(Math.min(w.size, region.offset) / w.bs) * w.bs;
    const history = new HistoryWriter(device.socket, region.offset, region.bytes);
    const startedAt = new Date().toISOString();
    let phase = 'running';
    const progress = new Progress(() => ({ elapsedS: this.elapsedS(), durationS: sc.durationS, phase, sample: sampler.last, next: schedule.next() }));

    this.t0 = performance.now();
    schedule.start();
    await sampler.start();
    if (!this.o.quiet) progress.start();
    let fioOut: FioOutcome;
    let settled: string | undefined;
    let historyResult;
    try {
      this.fio = new FioRun(w, device.socket, fioSize, w.runtimeS);
      history.start();
      // The run lasts its duration; fio (waiting for a quorum, say) gets a minute more to end.
      await this.sleepUntil(sc.durationS * 1000);
      this.check();
      phase = 'fio ending';
      const late = setTimeout(() => this.fio!.kill(), 60_000);
      fioOut = await this.fio.done;
      clearTimeout(late);
      this.check();
      phase = 'settling';
      await history.stop(30_000);
      await schedule.stop(sc.durationS);
      settled = await this.waitInSync(sampler, SETTLE_MS, 'at the end').then(() => undefined, (e: Error) => e.message);
      this.check();
      phase = 'reading back';
      historyResult = await history.check();
    } finally {
      sampler.stop();
      progress.stop();
      await schedule.stop(sc.durationS);
    }
    await device.stop();
    this.check();
    const running = replicas.filter((s) => s.running);
    const checks: LabCheck[] = [
      fioCheck(fioOut, w.verify !== 'none'),
      running.length >= 2 ? await compareCheck(running) : { name: 'replica compare', ok: true, detail: `only ${running.length} replica running at the end: nothing to compare` },
      historyCheck(historyResult, region),
    ];
    if (settled) checks[1] = { ...checks[1]!, detail: `${checks[1]!.detail}\n(not every replica was in sync: ${settled})` };
    return {
      version: 1,
      scenario: { name: sc.name, ...(sc.description !== undefined && { description: sc.description }), file: sc.file },
      startedAt,
      durationS: sc.durationS,
      verdict: { ok: checks.every((c) => c.ok), checks },
      samples: sampler.samples,
      faults: schedule.faults,
      servers: this.servers.list.map((s) => ({ name: s.name, url: s.url })),
      workload: w,
      device: { ...sc.device, path: device.uri },
      ...(fioOut.summary && { fio: fioOut.summary }),
    };
  }

  /** Writes results.json and report.html into the folder. */
  write(run: LabRun): void {
    writeFileSync(join(this.o.folder, 'results.json'), JSON.stringify(run, null, 2) + '\n');
    writeFileSync(join(this.o.folder, 'report.html'), renderReport(run));
  }

  private sleepUntil(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms - this.elapsedS() * 1000));
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.abortWake = done;
    });
  }

  private async waitInSync(sampler: Sampler, timeoutMs: number, when: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      this.check();
      try {
        const st = await sampler.status();
        // A replica whose server is down (killed, not restarted) cannot come back: not awaited.
        const reps = ((st.replicas ?? []) as { url: string; state: string }[]).filter((r) => this.servers.byUrl(r.url)?.running !== false);
        if (reps.length > 0 && reps.every((r) => r.state === 'in-sync')) return;
        last = reps.map((r) => `${this.servers.byUrl(r.url)?.name ?? r.url} ${r.state}`).join(', ');
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`${when}: not every replica in sync within ${timeoutMs / 1000} s (${last})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
