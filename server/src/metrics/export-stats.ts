// One export's figures, counted on the request path in plain numbers and typed arrays (no
// allocation per request); server-metrics.ts reads them when /metrics is scraped.
import { OP_COUNT } from '@wsblk/shared';
import { LatencyHistogram } from '@wsblk/shared';

export class ExportStats {
  /** Requests answered, by op (Op value). */
  readonly ops = new Float64Array(OP_COUNT);
  /** Bytes the requests covered (their length), by op. */
  readonly bytes = new Float64Array(OP_COUNT);
  /** Time from the request's start to its answer, by op. */
  readonly latency = Array.from({ length: OP_COUNT }, () => new LatencyHistogram());
  /** Requests answered with an error, by errno value. */
  readonly errors = new Map<number, number>();
  /** Writes refused with ESTALE: their replica-set record was older than the export's. */
  staleWrites = 0;
  /** Requests a resumed connection replayed that were answered from the session's window, not run again. */
  replayHits = 0;
  /** Sessions whose connection was fenced (a resume took over, or a --steal ended it). */
  fenced = 0;
  /** Time resumes waited for the fenced connection's requests to drain (seconds). */
  fenceWaitSeconds = 0;

  /** A request answered: `seconds` since it started. */
  done(op: number, length: number, status: number, seconds: number): void {
    this.ops[op]!++;
    this.bytes[op]! += length;
    this.latency[op]!.observe(seconds);
    if (status !== 0) this.errors.set(status, (this.errors.get(status) ?? 0) + 1);
  }
}
