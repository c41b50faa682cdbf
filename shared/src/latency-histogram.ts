// A latency histogram cheap enough for every request: observe() is a bucket search and two
// additions into preallocated arrays (prom-client's own observe builds a label key each time).
// prom-client (server, daemon) still writes the exposition text: HistogramFamily hands it over
// as a metric object. No import of prom-client here: shared/ stays free of it.

/** One series as prom-client's Registry reads it from a metric's get(). */
export interface SeriesValue {
  metricName?: string;
  labels: Record<string, string | number>;
  value: number;
}

/** Upper bounds in seconds, 50 µs to 10 s: a memory disk answers in tens of µs, a fault waits seconds. */
export const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export class LatencyHistogram {
  /** Counts per bucket (not cumulative); the last is +Inf. */
  readonly counts = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }

  /** The q-quantile in seconds (0 when empty), by the bucket's upper bound, as Prometheus' histogram_quantile interpolates. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = q * this.count;
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      const n = this.counts[i]!;
      if (seen + n >= rank && n > 0) {
        const lo = i === 0 ? 0 : LATENCY_BUCKETS[i - 1]!;
        const hi = LATENCY_BUCKETS[i] ?? LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]!;
        return lo + (hi - lo) * ((rank - seen) / n);
      }
      seen += n;
    }
    return LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]!;
  }

  /** The series of this histogram for `labels`: cumulative buckets, sum and count. */
  values(name: string, labels: Record<string, string>): SeriesValue[] {
    const out: SeriesValue[] = [];
    let acc = 0;
    for (let i = 0; i < this.counts.length; i++) {
      acc += this.counts[i]!;
      const le = i < LATENCY_BUCKETS.length ? LATENCY_BUCKETS[i]! : '+Inf';
      out.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: acc });
    }
    out.push({ metricName: `${name}_sum`, labels, value: this.sum });
    out.push({ metricName: `${name}_count`, labels, value: this.count });
    return out;
  }
}

/**
 * A histogram metric whose series are read from LatencyHistograms at scrape time, for
 * Registry.registerMetric (it formats them like its own Histogram's).
 */
export class HistogramFamily {
  readonly type = 'histogram';
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly series: () => Iterable<[Record<string, string>, LatencyHistogram]>,
  ) {}

  get(): { name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: SeriesValue[] } {
    const values: SeriesValue[] = [];
    for (const [labels, h] of this.series()) values.push(...h.values(this.name, labels));
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values };
  }
}
