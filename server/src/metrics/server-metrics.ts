// The server's Prometheus registry (one per process): every series is read at scrape time from
// the exports' ExportStats, the session table and the fault table; prom-client writes the text.
import { Counter, Gauge, Registry } from 'prom-client';
import { OP_NAMES, errnoName } from '@wsblk/shared';
import type { FaultTable } from '../faults/fault-table.js';
import type { SessionTable } from '../session/session-table.js';
import type { ExportStats } from './export-stats.js';
import { HistogramFamily, type LatencyHistogram } from '@wsblk/shared';

export interface MetricSources {
  exports: () => Iterable<[string, ExportStats]>;
  sessions: SessionTable;
  faults: FaultTable;
}

const opName = (op: number) => OP_NAMES[op]!.toLowerCase();

export function serverRegistry(src: MetricSources): Registry {
  const registry = new Registry();
  const perOp = (name: string, help: string, pick: (s: ExportStats) => Float64Array) => new Counter({
    name, help, labelNames: ['export', 'op'], registers: [registry],
    collect() {
      this.reset();
      for (const [exp, s] of src.exports()) {
        const a = pick(s);
        for (let op = 0; op < a.length; op++) if (a[op]! > 0) this.inc({ export: exp, op: opName(op) }, a[op]!);
      }
    },
  });
  const perExport = (name: string, help: string, pick: (s: ExportStats) => number) => new Counter({
    name, help, labelNames: ['export'], registers: [registry],
    collect() {
      this.reset();
      for (const [exp, s] of src.exports()) this.inc({ export: exp }, pick(s));
    },
  });
  perOp('wsblk_server_requests_total', 'Requests answered, by export and operation.', (s) => s.ops);
  perOp('wsblk_server_request_bytes_total', 'Bytes the requests covered (their length), by export and operation.', (s) => s.bytes);
  new Counter({
    name: 'wsblk_server_errors_total', help: 'Requests answered with an error, by export and errno.',
    labelNames: ['export', 'errno'], registers: [registry],
    collect() {
      this.reset();
      for (const [exp, s] of src.exports()) for (const [errno, n] of s.errors) this.inc({ export: exp, errno: errnoName(errno) }, n);
    },
  });
  perExport('wsblk_server_stale_writes_total', 'Writes refused with ESTALE: the client\'s replica-set epoch was older than the export\'s record.', (s) => s.staleWrites);
  perExport('wsblk_server_replay_hits_total', 'Replayed requests answered from the session\'s window instead of being run again.', (s) => s.replayHits);
  perExport('wsblk_server_sessions_fenced_total', 'Connections fenced: a resume took their session over, or a steal ended it.', (s) => s.fenced);
  perExport('wsblk_server_fence_wait_seconds_total', 'Time resumes waited for the fenced connection\'s requests to drain.', (s) => s.fenceWaitSeconds);
  new Gauge({
    name: 'wsblk_server_sessions', help: 'Live sessions by export: connected, or detached (lost, may resume).',
    labelNames: ['export', 'state'], registers: [registry],
    collect() {
      this.reset();
      const counts = src.sessions.countByExport();
      for (const [exp] of src.exports()) {
        const c = counts.get(exp) ?? { connected: 0, detached: 0 };
        this.set({ export: exp, state: 'connected' }, c.connected);
        this.set({ export: exp, state: 'detached' }, c.detached);
      }
    },
  });
  new Gauge({
    name: 'wsblk_server_faults_active', help: 'Faults set, by export (* = every export) and kind.',
    labelNames: ['export', 'kind'], registers: [registry],
    collect() {
      this.reset();
      const n = new Map<string, { export: string; kind: string; count: number }>();
      for (const f of src.faults.list()) {
        const key = `${f.export ?? '*'}\0${f.kind}`;
        const e = n.get(key) ?? { export: f.export ?? '*', kind: f.kind, count: 0 };
        e.count++;
        n.set(key, e);
      }
      for (const e of n.values()) this.set({ export: e.export, kind: e.kind }, e.count);
    },
  });
  registry.registerMetric(new HistogramFamily(
    'wsblk_server_request_duration_seconds', 'Time from a request\'s arrival to its answer, by export and operation.',
    function* () {
      for (const [exp, s] of src.exports()) {
        for (let op = 0; op < s.latency.length; op++) {
          const h: LatencyHistogram = s.latency[op]!;
          if (h.count > 0) yield [{ export: exp, op: opName(op) }, h];
        }
      }
    },
  ) as never);
  return registry;
}
