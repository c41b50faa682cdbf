// Samples the device every sampleInterval through its daemon's control socket (what `wsblk stats`
// reads): IOPS and p50/p99 latency over the interval, and each replica's state.
import { askControl } from '../daemon/control.js';
import { figuresOf } from '../cli/stats.js';
import type { LabSample, ReplicaState } from './results.js';
import type { LabServers } from './servers.js';

type Status = Parameters<typeof figuresOf>[1]['status'];

export class Sampler {
  readonly samples: LabSample[] = [];
  /** The figures of the last sample, for the progress line. */
  last: LabSample | undefined;
  private timer: NodeJS.Timeout | undefined;
  private prev: { at: number; status: Status } | undefined;
  private busy = false;

  constructor(private readonly control: string, private readonly servers: LabServers, private readonly intervalS: number,
    private readonly elapsedS: () => number) {}

  async start(): Promise<void> {
    this.prev = await this.read();
    this.timer = setInterval(() => void this.tick(), this.intervalS * 1000);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The daemon's status now (throws when it does not answer). */
  async status(): Promise<Status> {
    return askControl(this.control, { cmd: 'status' }, 2000);
  }

  private async read(): Promise<{ at: number; status: Status }> {
    return { at: Date.now(), status: await this.status() };
  }

  private async tick(): Promise<void> {
    if (this.busy) return; // a daemon slower than the interval: skip, the next sample covers the gap
    this.busy = true;
    try {
      const next = await this.read();
      const f = figuresOf('lab', this.prev!, next);
      this.prev = next;
      const idle = f.readIops + f.writeIops === 0;
      const sample: LabSample = {
        t: Math.round(this.elapsedS() * 100) / 100,
        readIops: Math.round(f.readIops), writeIops: Math.round(f.writeIops),
        p50Ms: idle || !Number.isFinite(f.p50Ms) ? null : round3(f.p50Ms),
        p99Ms: idle || !Number.isFinite(f.p99Ms) ? null : round3(f.p99Ms),
        replicas: (f.replicas ?? []).map((r) => ({
          name: this.servers.byUrl(r.url)?.name ?? r.url, url: r.url, state: r.state as ReplicaState,
          ...(r.state === 'resyncing' && r.resyncPercent !== null && { resyncPercent: r.resyncPercent }),
        })),
      };
      this.samples.push(sample);
      this.last = sample;
    } catch {
      /* the daemon did not answer in time: this interval has no sample */
    } finally {
      this.busy = false;
    }
  }
}

const round3 = (n: number): number => Math.round(n * 1000) / 1000;
