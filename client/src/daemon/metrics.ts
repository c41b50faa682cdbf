// A daemon's figures (one Prometheus registry per daemon): I/O of the device and of each replica
// counted as requests pass (typed arrays, a histogram observe), the rest read at scrape time
// from the transports and the replica set's status. Served as Prometheus text over the control
// socket ({cmd: 'metrics'}) and, with connect --metrics-listen, over HTTP GET /metrics.
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import { HistogramFamily, LatencyHistogram, OP_COUNT, OP_NAMES, logger } from '@wsblk/shared';
import type { IoCallback, IoRequest } from '../target.js';
import type { ReplicaStatus } from '../replica/replica-set.js';
import type { RemoteDisk, TransportMeter, TransportStats } from '../transport/remote-disk.js';

const log = logger('metrics');
const opName = (op: number) => OP_NAMES[op]!.toLowerCase();

/** Requests through one target: counts, bytes, latency, and how many are in flight. */
export class IoMeter implements TransportMeter {
  readonly ops = new Float64Array(OP_COUNT);
  readonly bytes = new Float64Array(OP_COUNT);
  readonly latency = Array.from({ length: OP_COUNT }, () => new LatencyHistogram());
  private pending = 0;

  /** `inflightOf`: where a transport's meter reads what is in flight (submit() counts its own). */
  constructor(private readonly inflightOf?: () => number) {}

  get inflight(): number {
    return this.inflightOf ? this.inflightOf() : this.pending;
  }

  /** Sends `req` through `submit`, counting it when it is answered. */
  submit(submit: (req: IoRequest, cb: IoCallback) => void, req: IoRequest, cb: IoCallback): void {
    const t0 = performance.now();
    this.pending++;
    submit(req, (status, data) => {
      this.pending--;
      this.count(req.op, req.length, (performance.now() - t0) / 1000);
      cb(status, data);
    });
  }

  /** One request answered (a transport's meter calls it itself: see TransportMeter). */
  count(op: number, length: number, seconds: number): void {
    this.ops[op]!++;
    this.bytes[op]! += length;
    this.latency[op]!.observe(seconds);
  }

  /** Totals for `wsblk stats`: ops and bytes by op name, and READ+WRITE latency bucket counts. */
  snapshot(): { ops: Record<string, number>; bytes: Record<string, number>; latency: number[]; inflight: number } {
    const ops: Record<string, number> = {};
    const bytes: Record<string, number> = {};
    for (let op = 0; op < OP_COUNT; op++) {
      if (this.ops[op]) {
        ops[opName(op)] = this.ops[op]!;
        bytes[opName(op)] = this.bytes[op]!;
      }
    }
    const latency = [...this.latency[0]!.counts].map((n, i) => n + this.latency[1]!.counts[i]!);
    return { ops, bytes, latency, inflight: this.inflight };
  }
}

/** One replica as the metrics see it: its transport's figures and its I/O. */
export interface ReplicaSource {
  url: string;
  io: IoMeter;
  stats: () => TransportStats;
}

export class DaemonMetrics {
  readonly registry = new Registry();
  readonly io = new IoMeter();
  readonly replicas: ReplicaSource[] = [];
  /** Single server: its transport's figures. */
  transport: (() => TransportStats) | undefined;
  /** Single server with --failover: every gateway, the primary first. */
  gateways: string[] = [];
  /** Replica set: each replica's status (state, outstanding, resync). */
  replicaStatus: (() => ReplicaStatus[]) | undefined;
  /** Ejections seen per replica (a replica leaving in-sync or resyncing for ejected/unreachable). */
  private readonly ejections = new Map<string, number>();
  private readonly lastState = new Map<string, string>();

  constructor(readonly device: string) {
    const r = this.registry;
    const dev = { device };
    const self = this;
    const ioCounter = (name: string, help: string, pick: (m: IoMeter) => Float64Array) => new Counter({
      name, help, labelNames: ['device', 'replica', 'op'], registers: [r],
      collect() {
        this.reset();
        for (const [labels, m] of self.meters()) {
          const a = pick(m);
          for (let op = 0; op < a.length; op++) if (a[op]) this.inc({ ...labels, op: opName(op) }, a[op]!);
        }
      },
    });
    ioCounter('wsblk_client_requests_total', 'Requests answered, by operation: the device\'s (no replica label) and each replica\'s.', (m) => m.ops);
    ioCounter('wsblk_client_request_bytes_total', 'Bytes the answered requests covered, by operation.', (m) => m.bytes);
    r.registerMetric(new HistogramFamily('wsblk_client_request_duration_seconds',
      'Time from a request\'s submission to its answer, by operation (the device\'s, and each replica\'s).',
      () => this.latencySeries()) as never);
    new Gauge({
      name: 'wsblk_client_inflight_requests', help: 'Requests submitted and not answered yet (the device\'s, and each replica\'s).',
      labelNames: ['device', 'replica'], registers: [r],
      collect() {
        this.reset();
        this.set(dev, self.io.inflight);
        for (const x of self.replicas) this.set({ ...dev, replica: x.url }, x.io.inflight);
      },
    });
    const perTransport = (name: string, help: string, pick: (t: TransportStats) => number) => new Counter({
      name, help, labelNames: ['device', 'replica'], registers: [r],
      collect() {
        this.reset();
        if (self.transport) this.inc(dev, pick(self.transport()));
        for (const x of self.replicas) this.inc({ ...dev, replica: x.url }, pick(x.stats()));
      },
    });
    perTransport('wsblk_client_reconnects_total', 'Connections to the server made again after one was lost.', (t) => t.reconnects);
    perTransport('wsblk_client_replayed_requests_total', 'Requests sent again on a new connection (the server answers a done one from its window).', (t) => t.replayed);
    perTransport('wsblk_client_timed_out_requests_total', 'Requests failed by --io-timeout.', (t) => t.timedOut);
    perTransport('wsblk_client_failovers_total', 'Times the connection moved to another gateway (connect --failover).', (t) => t.failovers);
    new Gauge({
      name: 'wsblk_client_gateway', help: 'The gateway the device is on (1), of those it may fail over to (0); absent without --failover.',
      labelNames: ['device', 'gateway'], registers: [r],
      collect() {
        this.reset();
        const t = self.transport?.();
        for (const g of self.gateways) this.set({ ...dev, gateway: g }, t?.gateway === g ? 1 : 0);
      },
    });
    new Counter({
      name: 'wsblk_client_replica_ejections_total', help: 'Times a replica was ejected from the set (failed, or silent for --replica-timeout).',
      labelNames: ['device', 'replica'], registers: [r],
      collect() {
        this.reset();
        self.observeStates();
        for (const x of self.replicas) this.inc({ ...dev, replica: x.url }, self.ejections.get(x.url) ?? 0);
      },
    });
    new Gauge({
      name: 'wsblk_client_replica_up', help: 'Replica state: 1 for the state it is in (in-sync, resyncing, ejected, unreachable), 0 for the others.',
      labelNames: ['device', 'replica', 'state'], registers: [r],
      collect() {
        this.reset();
        for (const s of self.replicaStatus?.() ?? []) {
          for (const state of ['in-sync', 'resyncing', 'ejected', 'unreachable']) this.set({ ...dev, replica: s.url, state }, s.state === state ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: 'wsblk_client_replica_outstanding_requests', help: 'Requests sent to the replica and not answered.',
      labelNames: ['device', 'replica'], registers: [r],
      collect() {
        this.reset();
        for (const s of self.replicaStatus?.() ?? []) this.set({ ...dev, replica: s.url }, s.outstanding);
      },
    });
    new Gauge({
      name: 'wsblk_client_replica_resync_percent', help: 'Resync progress, 0-100 (100 when in sync, 0 when out and not resyncing).',
      labelNames: ['device', 'replica'], registers: [r],
      collect() {
        this.reset();
        for (const s of self.replicaStatus?.() ?? []) {
          this.set({ ...dev, replica: s.url }, s.state === 'in-sync' ? 100 : s.resync?.percent ?? 0);
        }
      },
    });
  }

  /** Counts ejections from the replica set's state changes (called on each, and at scrape time). */
  observeStates(list = this.replicaStatus?.() ?? []): void {
    for (const s of list) {
      const before = this.lastState.get(s.url);
      const out = s.state === 'ejected' || s.state === 'unreachable';
      if (out && (before === 'in-sync' || before === 'resyncing')) this.ejections.set(s.url, (this.ejections.get(s.url) ?? 0) + 1);
      this.lastState.set(s.url, s.state);
    }
  }

  ejectionsOf(url: string): number {
    return this.ejections.get(url) ?? 0;
  }

  /** The device's meter (no replica label) and each replica's. */
  private *meters(): Generator<[Record<string, string>, IoMeter]> {
    yield [{ device: this.device }, this.io];
    for (const x of this.replicas) yield [{ device: this.device, replica: x.url }, x.io];
  }

  private *latencySeries(): Generator<[Record<string, string>, LatencyHistogram]> {
    for (const [labels, m] of this.meters()) {
      for (let op = 0; op < OP_COUNT; op++) if (m.latency[op]!.count) yield [{ ...labels, op: opName(op) }, m.latency[op]!];
    }
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** HTTP GET /metrics on `host:port` (connect --metrics-listen); anything else is 404. */
export function serveMetrics(metrics: DaemonMetrics, host: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || !/^\/metrics\/?(\?.*)?$/.test(req.url ?? '')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    metrics.text().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`cannot listen on ${host}:${port} (metrics): ${e.code === 'EADDRINUSE' ? 'address in use' : e.message}`)));
    server.listen(port, host, () => {
      const a = server.address();
      log.info(`metrics on http://${typeof a === 'object' && a ? `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}` : `${host}:${port}`}/metrics`);
      resolve(server);
    });
  });
}

/**
 * Meters one replica: every request its transport carries (the set's writes, its reads, resync
 * copies) is counted by the transport itself (RemoteDisk.meter), so the replica code needs no
 * hooks and a request costs no closure or clock read more per replica.
 */
export function meterReplica(metrics: DaemonMetrics, url: string, disk: RemoteDisk): void {
  const io = new IoMeter(() => disk.inflight);
  disk.meter = io;
  metrics.replicas.push({ url, io, stats: () => disk.stats });
}

export function unmeterReplica(metrics: DaemonMetrics, url: string): void {
  const i = metrics.replicas.findIndex((x) => x.url === url);
  if (i >= 0) metrics.replicas.splice(i, 1);
}
