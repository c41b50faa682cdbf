// The transport faults of one connection, as Toxiproxy's toxics: latency with jitter, a
// bandwidth limit, a black hole (open, silent), a reset, one direction dropped. The connection
// calls in here only while some transport fault is set on the server (TransportFaults.active);
// whether a fault picks this connection (its probability) is decided once per connection.
import { performance } from 'node:perf_hooks';
import type { WsConn } from '@wsblk/shared';
import type { ActiveFault, Link, TransportFaults } from './fault-table.js';

type Direction = 'replies' | 'requests';

/** Messages of one direction held back by latency or bandwidth, sent in order when due. */
class Lane {
  private queue: Array<{ at: number; data: Buffer }> = [];
  private timer: NodeJS.Timeout | undefined;
  /** When the last queued message goes, and when the bandwidth is next free (performance.now()). */
  private last = 0;
  private free = 0;
  bytes = 0;

  constructor(private readonly emit: (data: Buffer) => void, private readonly emptied: () => void) {}

  get busy(): boolean {
    return this.queue.length > 0;
  }

  push(data: Buffer, latencyMs: number, rate: number): void {
    const now = performance.now();
    let start = now;
    if (rate > 0) {
      start = Math.max(now, this.free) + (data.length * 1000) / rate;
      this.free = start;
    }
    const at = Math.max(start + latencyMs, this.last);
    this.last = at;
    this.queue.push({ at, data });
    this.bytes += data.length;
    this.arm();
  }

  /** Sends everything queued now (the faults that held it are gone). */
  release(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.due(Infinity);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.queue = [];
    this.bytes = 0;
  }

  private arm(): void {
    if (this.timer || this.queue.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.due(performance.now() + 1);
      this.arm();
    }, Math.max(0, this.queue[0]!.at - performance.now()));
  }

  private due(until: number): void {
    let n = 0;
    while (n < this.queue.length && this.queue[n]!.at <= until) {
      const { data } = this.queue[n++]!;
      this.bytes -= data.length;
      this.emit(data);
    }
    if (n === 0) return;
    this.queue.splice(0, n);
    if (this.queue.length === 0) this.emptied();
  }
}

export class LinkFaults implements Link {
  private readonly picked = new WeakMap<ActiveFault, boolean>();
  private readonly out: Lane;
  private readonly in: Lane;

  constructor(
    private readonly table: TransportFaults,
    private readonly ws: WsConn,
    private readonly exportName: string,
    private readonly session: string,
    private readonly client: string | undefined,
    private readonly deliver: (data: Buffer) => void,
    /** Replies held here went out: the connection may owe less now. */
    onSent: () => void,
  ) {
    this.out = new Lane((d) => ws.send([d]), onSent);
    this.in = new Lane(deliver, () => {});
    table.links.add(this);
  }

  /** Reply bytes held back here (counted in what the connection owes). */
  get heldBytes(): number {
    return this.out.bytes;
  }

  /** A black hole holds this connection: nothing is answered, not even pings. */
  get silent(): boolean {
    return this.table.active && this.table.faults.some((f) => f.spec.kind === 'blackhole' && this.picks(f));
  }

  close(): void {
    this.table.links.delete(this);
    this.out.stop();
    this.in.stop();
  }

  refresh(): void {
    for (const [dir, lane] of [['replies', this.out], ['requests', this.in]] as const) {
      if (lane.busy && !this.table.faults.some((f) => (f.spec.kind === 'latency' || f.spec.kind === 'bandwidth') && (f.spec.direction ?? 'replies') === dir && this.picks(f))) {
        lane.release();
      }
    }
  }

  /** A message of replies; `parts` are sent as they are, or copied when held (a READ's data may be the backend's memory). */
  send(parts: Buffer[]): void {
    if (this.ws.socket.destroyed) return;
    const shape = this.shape('replies');
    if (shape === 'drop') return;
    if (shape === 'reset') {
      this.ws.socket.resetAndDestroy();
      return;
    }
    if (shape.latency === 0 && shape.rate === 0 && !this.out.busy) return this.ws.send(parts);
    this.out.push(Buffer.concat(parts), shape.latency, shape.rate);
  }

  /** A message of requests; `data` is the caller's only during this call (a pooled frame). */
  receive(data: Buffer): void {
    const shape = this.shape('requests');
    if (shape === 'drop' || shape === 'reset') return;
    if (shape.latency === 0 && shape.rate === 0 && !this.in.busy) return this.deliver(data);
    this.in.push(Buffer.from(data), shape.latency, shape.rate);
  }

  /** Whether fault `f` is aimed at this connection; its probability is drawn once. */
  private picks(f: ActiveFault): boolean {
    const s = f.spec;
    if (s.export !== undefined && s.export !== this.exportName) return false;
    if (!f.aims(this.session, () => this.client)) return false;
    let p = this.picked.get(f);
    if (p === undefined) this.picked.set(f, (p = s.probability >= 1 || Math.random() < s.probability));
    return p;
  }

  /** What the faults do to one message going `dir`: dropped, a reset, or held for a while. */
  private shape(dir: Direction): 'drop' | 'reset' | { latency: number; rate: number } {
    let latency = 0;
    let rate = 0;
    for (const f of this.table.faults) {
      const s = f.spec;
      if (!this.picks(f)) continue;
      const ours = (s.direction ?? 'replies') === dir;
      switch (s.kind) {
        case 'blackhole':
          if (f.spend()) return 'drop';
          break;
        case 'drop':
          if (ours && f.spend()) return 'drop';
          break;
        case 'reset':
          // On a reply: the requests were applied, their replies are lost with the connection.
          if (dir === 'replies' && f.spend()) return 'reset';
          break;
        case 'latency':
          if (ours && f.spend()) latency += Math.max(0, s.ms! + (s.jitter ? (Math.random() * 2 - 1) * s.jitter : 0));
          break;
        case 'bandwidth':
          if (ours && f.spend()) rate = rate === 0 ? s.rate! : Math.min(rate, s.rate!);
          break;
      }
    }
    return { latency, rate };
  }
}
