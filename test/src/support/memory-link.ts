// A replica for ReplicaSet unit tests: a MemoryTarget behind the ReplicaLink interface, whose
// connection can go down (requests wait, as RemoteDisk holds them), stall (nothing answered),
// apply writes after random delays (as a server's parallel backend may), and fail requests.
import { createHash } from 'node:crypto';
import type { IoCallback, IoRequest, ReplicaLink, SetRecord } from '@wsblk/client';
import { Op } from '@wsblk/shared';
import { MemoryTarget } from './memory-target.js';

export const CHECKSUM_CHUNK = 64 << 10;

type Held = { req: IoRequest; cb: IoCallback };

export class MemoryLink implements ReplicaLink {
  readonly target: MemoryTarget;
  connected = true;
  meta: SetRecord | null = null;
  /** Every record written, in order. */
  readonly metaLog: SetRecord[] = [];
  /** Requests sent, by op name (to see where reads went). */
  readonly sent: Record<string, number> = {};
  /** Events in order: 'meta:<epoch>', 'write:<offset>'... for ordering assertions. */
  readonly events: string[];
  stalled = false;
  /** Writes are applied after a random delay up to this many ms (0: at once). */
  jitterMs = 0;
  /** Fails requests for which it returns an errno. */
  fault: ((req: IoRequest) => number) | null = null;
  private held: Held[] = [];
  private readonly live = new Set<{ done: boolean; cb: IoCallback }>();
  private listeners: Array<(up: boolean, sessionLost?: boolean) => void> = [];
  /** With a volatile cache (volatileCache()): the data as of its last FLUSH, what crash() leaves. */
  private durable: Buffer | null = null;
  /** FLUSHes completed with a volatile cache. */
  flushesDone = 0;

  constructor(readonly id: string, size: number, events: string[] = [], private readonly rnd: () => number = Math.random) {
    this.target = new MemoryTarget({ size, maxPayload: 1 << 20 });
    this.events = events;
  }

  get info() {
    return this.target.info;
  }

  submit(req: IoRequest, cb: IoCallback): void {
    const name = Op[req.op];
    this.sent[name] = (this.sent[name] ?? 0) + 1;
    if (!this.connected || this.stalled) {
      this.held.push({ req, cb });
      return;
    }
    this.run(req, cb);
  }

  private run(req: IoRequest, cb: IoCallback): void {
    const entry = { done: false, cb };
    this.live.add(entry);
    const finish = (status: number, data?: Buffer) => {
      if (entry.done) return;
      entry.done = true;
      this.live.delete(entry);
      cb(status, data);
    };
    const apply = () => {
      if (entry.done) return; // abandoned: never applied
      const st = this.fault?.(req) ?? 0;
      if (st) return void setImmediate(finish, st);
      if (req.op === Op.Write) this.events.push(`${this.id} write ${req.offset}`);
      const done = req.op === Op.Flush && this.durable
        ? (status: number, data?: Buffer) => { if (status === 0) { this.durable = this.image(); this.flushesDone++; } finish(status, data); }
        : finish;
      this.target.submit(req.op === Op.Write ? { ...req, payload: Buffer.from(req.payload!) } : req, done);
    };
    if (this.jitterMs > 0 && req.op === Op.Write) setTimeout(apply, this.rnd() * this.jitterMs);
    else apply();
  }

  /** The connection drops: requests wait until up(). */
  down(): void {
    this.connected = false;
    for (const f of this.listeners) f(false);
  }

  /** `sessionLost`: its server restarted, so the connection comes back on a new session. */
  up(sessionLost = false): void {
    this.connected = true;
    this.stalled = false;
    const h = this.held;
    this.held = [];
    for (const { req, cb } of h) this.run(req, cb);
    for (const f of this.listeners) f(true, sessionLost);
  }

  /** From now on writes are volatile until a FLUSH, as in a server's page cache. */
  volatileCache(): void {
    this.durable = this.image();
  }

  /** A power cut: what was not flushed is gone, and the connection with it (up() brings it back). */
  crash(): void {
    if (!this.durable) throw new Error('crash() needs volatileCache() first');
    this.target.write(0, this.durable);
    this.down();
  }

  private image(): Buffer {
    return this.target.read(0, this.target.info.size);
  }

  async readMeta(): Promise<SetRecord | null> {
    if (!this.connected) throw new Error(`${this.id} is down`);
    return this.meta ? structuredClone(this.meta) : null;
  }

  writeMeta(record: SetRecord): Promise<void> {
    if (!this.connected || this.stalled) return new Promise(() => {});
    this.meta = structuredClone(record);
    this.metaLog.push(structuredClone(record));
    this.events.push(`${this.id} meta ${record.epoch} [${record.inSync.join(' ')}]`);
    return Promise.resolve();
  }

  async checksum(offset: number, length: number): Promise<Buffer> {
    if (!this.connected) throw new Error(`${this.id} is down`);
    const out: Buffer[] = [];
    for (let at = offset; at < offset + length; at += CHECKSUM_CHUNK) {
      out.push(createHash('sha256').update(this.target.read(at, Math.min(CHECKSUM_CHUNK, offset + length - at))).digest().subarray(0, 16));
    }
    return Buffer.concat(out);
  }

  abandon(status: number): void {
    const h = this.held;
    this.held = [];
    for (const e of [...this.live]) {
      e.done = true;
      this.live.delete(e);
      setImmediate(e.cb, status);
    }
    for (const { cb } of h) setImmediate(cb, status);
  }

  onState(fn: (up: boolean, sessionLost?: boolean) => void): void {
    this.listeners.push(fn);
  }

  async close(): Promise<void> {}
}
