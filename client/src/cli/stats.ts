// `wsblk stats DEVICE`: the daemon's figures as rates over one second (two status samples):
// IOPS, MiB/s, p50/p99 latency, in-flight, reconnects, and each replica's state and resync.
import { Command } from 'commander';
import { LatencyHistogram } from '@wsblk/shared';
import { askControl } from '../daemon/control.js';
import { controlPath, listStates, runDir } from '../daemon/rundir.js';
import { matchDevice } from './devices.js';
import { CliError, EXIT } from './errors.js';

interface IoSnapshot { ops: Record<string, number>; bytes: Record<string, number>; latency: number[]; inflight: number }
interface ReplicaSample {
  url: string; state: string; outstanding: number; resync?: { percent: number };
  reconnects?: number; replayed?: number; ejections?: number; io?: IoSnapshot;
}
interface Sample { at: number; status: Record<string, unknown> & { io?: IoSnapshot; replicas?: ReplicaSample[] } }

export interface Figures {
  device: string;
  state: string;
  readIops: number; writeIops: number;
  readMiBs: number; writeMiBs: number;
  p50Ms: number; p99Ms: number;
  inflight: number;
  reconnects: number;
  replicas?: Array<{ url: string; state: string; resyncPercent: number | null; outstanding: number; readIops: number; writeIops: number; ejections: number; reconnects: number }>;
}

const rate = (a: IoSnapshot | undefined, b: IoSnapshot | undefined, key: 'ops' | 'bytes', op: string, dt: number) =>
  ((b?.[key][op] ?? 0) - (a?.[key][op] ?? 0)) / dt;

/** The READ+WRITE latency of the interval: the difference of the two samples' bucket counts. */
function quantilesMs(a: IoSnapshot | undefined, b: IoSnapshot | undefined): [number, number] {
  const h = new LatencyHistogram();
  for (let i = 0; i < h.counts.length; i++) {
    h.counts[i] = (b?.latency[i] ?? 0) - (a?.latency[i] ?? 0);
    h.count += h.counts[i]!;
  }
  return [h.quantile(0.5) * 1000, h.quantile(0.99) * 1000];
}

export function figuresOf(id: string, a: Sample, b: Sample): Figures {
  const dt = Math.max(0.001, (b.at - a.at) / 1000);
  const s = b.status;
  const [p50Ms, p99Ms] = quantilesMs(a.status.io, s.io);
  const reps = s.replicas;
  const f: Figures = {
    device: id, state: String(s.state ?? '-'),
    readIops: rate(a.status.io, s.io, 'ops', 'read', dt), writeIops: rate(a.status.io, s.io, 'ops', 'write', dt),
    readMiBs: rate(a.status.io, s.io, 'bytes', 'read', dt) / 2 ** 20, writeMiBs: rate(a.status.io, s.io, 'bytes', 'write', dt) / 2 ** 20,
    p50Ms, p99Ms, inflight: s.io?.inflight ?? Number(s.inflight ?? 0),
    reconnects: reps ? reps.reduce((n, r) => n + (r.reconnects ?? 0), 0) : Number(s.reconnects ?? 0),
  };
  if (reps) {
    f.replicas = reps.map((r) => {
      const before = a.status.replicas?.find((x) => x.url === r.url)?.io;
      return {
        url: r.url, state: r.state, resyncPercent: r.state === 'in-sync' ? 100 : r.resync?.percent ?? null, outstanding: r.outstanding,
        readIops: rate(before, r.io, 'ops', 'read', dt), writeIops: rate(before, r.io, 'ops', 'write', dt),
        ejections: r.ejections ?? 0, reconnects: r.reconnects ?? 0,
      };
    });
  }
  return f;
}

/** The compact table, one line per row. */
export function renderFigures(f: Figures): string[] {
  const n = (v: number, d = 0) => v.toFixed(d);
  const table = (head: string[], rows: string[][]) => {
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    return [head, ...rows].map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ').trimEnd());
  };
  const lines = table(
    ['DEVICE', 'STATE', 'R IOPS', 'W IOPS', 'R MiB/s', 'W MiB/s', 'P50 ms', 'P99 ms', 'INFLIGHT', 'RECONNECTS'],
    [[f.device, f.state, n(f.readIops), n(f.writeIops), n(f.readMiBs, 1), n(f.writeMiBs, 1), n(f.p50Ms, 2), n(f.p99Ms, 2), String(f.inflight), String(f.reconnects)]],
  );
  if (f.replicas) {
    lines.push('', ...table(
      ['REPLICA', 'STATE', 'RESYNC', 'OUTSTANDING', 'R IOPS', 'W IOPS', 'EJECTIONS', 'RECONNECTS'],
      f.replicas.map((r) => [r.url, r.state, r.resyncPercent === null ? '-' : `${r.resyncPercent}%`, String(r.outstanding),
        n(r.readIops), n(r.writeIops), String(r.ejections), String(r.reconnects)]),
    ));
  }
  return lines;
}

export function statsCommand(): Command {
  return new Command('stats')
    .summary('show a device\'s I/O rates, latency and replicas')
    .description('Show the figures of a connected device, measured over one second: read and write IOPS and '
      + 'MiB/s, p50 and p99 latency (READ and WRITE, from the daemon\'s histogram), requests in flight, '
      + 'reconnects, and for a replica set each replica\'s state, resync progress, outstanding requests, IOPS '
      + 'and ejections. --watch redraws every second until Ctrl-C. The same figures, as counters and '
      + 'histograms, are Prometheus text with `connect --metrics-listen`.')
    .argument('<device>', 'an id from `wsblk list`, a device path or socket')
    .option('--watch', 'redraw every second until Ctrl-C')
    .option('--json', 'print the figures once as JSON')
    .action(async (what: string, o: { watch?: boolean; json?: boolean }) => {
      if (o.watch && o.json) throw new CliError('--watch and --json go separately', EXIT.USAGE);
      const dir = runDir();
      const s = matchDevice(listStates(dir), what);
      if (!s) throw new CliError(`no device '${what}' (see \`wsblk list\`)`, EXIT.NO_DEVICE);
      const sample = async (): Promise<Sample> => {
        try {
          return { at: Date.now(), status: await askControl(controlPath(dir, s.id), { cmd: 'status' }, 2000) };
        } catch (e) {
          throw new CliError(`${s.id}: the daemon does not answer (${(e as Error).message})`);
        }
      };
      const tick = () => new Promise((r) => setTimeout(r, 1000));
      let prev = await sample();
      if (!o.watch) {
        await tick();
        const f = figuresOf(s.id, prev, await sample());
        process.stdout.write(o.json ? JSON.stringify(f, null, 2) + '\n' : renderFigures(f).join('\n') + '\n');
        return;
      }
      // Redraw in place: home, each line cleared to its end, then the rest of the screen.
      let stop = false;
      process.once('SIGINT', () => { stop = true; });
      process.stdout.write('\x1b[2J\x1b[?25l');
      try {
        while (!stop) {
          await tick();
          if (stop) break;
          const next = await sample();
          const lines = [`wsblk stats ${s.id}  ${new Date().toISOString().slice(11, 19)}  (Ctrl-C to stop)`, '', ...renderFigures(figuresOf(s.id, prev, next))];
          process.stdout.write(`\x1b[H${lines.map((l) => `${l}\x1b[K`).join('\n')}\n\x1b[J`);
          prev = next;
        }
      } finally {
        process.stdout.write('\x1b[?25h');
      }
    });
}
