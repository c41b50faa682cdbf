// The scenario's timed actions, applied to the servers at their time: faults through each
// server's admin API, kill as SIGKILL, restart on the same ports, a partition as nftables drops
// where the runner can make them (else a black hole). Actions run one after another (a restart
// waits for the kill before it); each is recorded as a LabFault with its extent.
import type { NftPartitions } from './partition.js';
import type { LabFault } from './results.js';
import type { ScheduledAction } from './scenario.js';
import { EXPORT_NAME, type LabServer, type LabServers } from './servers.js';

/** A partition where nftables cannot be used (no nft, no CAP_NET_ADMIN). */
export const PARTITION_FALLBACK = 'as a transport black hole (nftables not usable here)';

type Kind = 'down' | 'blackhole' | 'partition' | 'slow' | 'pause';
const FAULT_NAME: Record<Exclude<Kind, 'down'>, string> = { blackhole: 'lab-blackhole', partition: 'lab-partition', slow: 'lab-slow', pause: 'lab-pause' };
const CRASH_FAULT = 'lab-crash';
/** The black hole a crash starts with (gone with the process). */
const CRASH_SILENCE = 'lab-crash-silence';
const LASTING = ['blackhole', 'partition', 'slow', 'pause'] as const;

export class Schedule {
  readonly faults: LabFault[] = [];
  private readonly open = new Map<string, LabFault>(); // `${server}/${kind}` -> its record
  private readonly timers: NodeJS.Timeout[] = [];
  private chain: Promise<void> = Promise.resolve();
  private pending: { atS: number; text: string }[] = [];
  private stopped = false;

  constructor(private readonly actions: ScheduledAction[], private readonly servers: LabServers, private readonly elapsedS: () => number,
    private readonly nft?: NftPartitions) {}

  /** Before the run: servers that will crash keep their unflushed writes apart (a crash fault). */
  async prepare(): Promise<void> {
    for (const name of new Set(this.actions.filter((a) => a.action === 'crash').map((a) => a.server))) await this.armCrash(this.servers.get(name));
  }

  /** Arms every action's timer, counted from now (the run's start). */
  start(): void {
    const events: { atS: number; run: () => Promise<void>; text: string }[] = [];
    for (const a of this.actions) {
      events.push({ atS: a.atS, run: () => this.apply(a), text: `${a.action} ${a.server}` });
      const undo = a.forS === undefined ? undefined : UNDO_OF[a.action];
      if (undo) events.push({ atS: a.atS + a.forS!, run: () => this.apply({ atS: a.atS + a.forS!, action: undo, server: a.server }), text: `${undo} ${a.server}` });
    }
    events.sort((x, y) => x.atS - y.atS);
    this.pending = events.map((e) => ({ atS: e.atS, text: e.text }));
    for (const e of events) {
      this.timers.push(setTimeout(() => {
        this.pending = this.pending.filter((p) => p.atS !== e.atS || p.text !== e.text);
        this.chain = this.chain.then(() => (this.stopped ? undefined : e.run()));
      }, Math.max(0, e.atS * 1000 - this.elapsedS() * 1000)));
    }
  }

  /** The next action not yet due, for the progress line. */
  next(): { atS: number; text: string } | undefined {
    return this.pending[0];
  }

  /** No more actions; the ones still on are recorded as lasting to endS. */
  async stop(endS: number): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    await this.chain;
    for (const f of this.open.values()) f.until = endS;
    this.open.clear();
  }

  private async apply(a: ScheduledAction): Promise<void> {
    const s = this.servers.get(a.server);
    const t = round(this.elapsedS());
    try {
      switch (a.action) {
        case 'kill':
          await s.kill();
          await this.down(t, s);
          return this.begin(t, a, 'down', 'SIGKILL');
        case 'crash': {
          // As a power cut: from this moment the server answers nothing (a black hole first: a
          // READ answered between the drop and the kill showed data the crash had lost, and fio
          // verify failed on it), its unflushed writes are dropped, and it is killed.
          await s.call('POST', '/faults', { kind: 'blackhole', name: CRASH_SILENCE });
          const lost = (await s.call('POST', `/faults/${CRASH_FAULT}/crash`)) as { writes: number; bytes: number };
          // Tests widen the moment between the drop and the kill, where nothing may be answered.
          const gapMs = Number(process.env.WSBLK_LAB_CRASH_KILL_DELAY_MS ?? 0);
          if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
          await s.kill();
          await this.down(t, s);
          return this.begin(t, a, 'down', `silenced, ${lost.writes} unflushed writes (${lost.bytes} bytes) dropped, then SIGKILL`);
        }
        case 'restart':
          await s.start();
          if (this.actions.some((x) => x.action === 'crash' && x.server === s.name && x.atS > a.atS)) await this.armCrash(s);
          if (!this.end(t, s.name, 'down')) this.note(t, a, `back on port ${s.port}`);
          return;
        case 'partition':
          if (this.nft) {
            await this.nft.cut(s.port);
            return this.begin(t, a, 'partition', this.nft.describe(s.port));
          }
          await s.call('POST', '/faults', { kind: 'blackhole', name: FAULT_NAME.partition });
          return this.begin(t, a, 'partition', PARTITION_FALLBACK);
        case 'blackhole':
          await s.call('POST', '/faults', { kind: 'blackhole', name: FAULT_NAME.blackhole });
          return this.begin(t, a, 'blackhole', 'connections open, nothing answered');
        case 'heal':
        case 'unpartition': {
          const kind = a.action === 'heal' ? 'blackhole' : 'partition';
          if (kind === 'partition' && this.nft) await this.nft.heal(s.port);
          else await s.call('DELETE', `/faults/${FAULT_NAME[kind]}`);
          if (!this.end(t, s.name, kind)) this.note(t, a);
          return;
        }
        case 'slow': {
          await s.call('POST', '/faults', { kind: 'delay', name: FAULT_NAME.slow, export: EXPORT_NAME, ms: a.delayMs, jitter: a.jitterMs ?? 0 });
          this.end(t, s.name, 'slow');
          return this.begin(t, a, 'slow', `delay ${a.delayMs} ms ± ${a.jitterMs ?? 0} ms`);
        }
        case 'pause':
          await s.call('POST', '/faults', { kind: 'pause', name: FAULT_NAME.pause, export: EXPORT_NAME });
          return this.begin(t, a, 'pause', 'all I/O held');
        case 'resume':
          await s.call('DELETE', `/faults/${FAULT_NAME.pause}`);
          if (!this.end(t, s.name, 'pause')) this.note(t, a);
          return;
        case 'clear': {
          // Every fault off, the armed crash overlay put back when a crash is still to come.
          if (s.running) {
            await s.call('DELETE', '/faults');
            if (this.actions.some((x) => x.action === 'crash' && x.server === s.name && x.atS > a.atS)) await this.armCrash(s);
          }
          if (this.nft && this.open.has(`${s.name}/partition`)) await this.nft.heal(s.port);
          const ended = LASTING.filter((k) => this.end(t, s.name, k));
          if (ended.length === 0) this.note(t, a, 'nothing was on');
          return;
        }
      }
    } catch (e) {
      this.note(t, a, `failed: ${(e as Error).message}`);
    }
  }

  /** A server gone ends what was on it; a partition's drop rule goes too (a restart uses the port). */
  private async down(t: number, s: LabServer): Promise<void> {
    if (this.nft && this.open.has(`${s.name}/partition`)) await this.nft.heal(s.port);
    for (const k of LASTING) this.end(t, s.name, k);
  }

  private async armCrash(s: LabServer): Promise<void> {
    await s.call('POST', '/faults', { kind: 'crash', name: CRASH_FAULT, export: EXPORT_NAME });
  }

  private begin(t: number, a: ScheduledAction, kind: Kind, detail: string): void {
    const f: LabFault = { t, action: a.action, server: a.server, detail };
    this.faults.push(f);
    this.open.set(`${a.server}/${kind}`, f);
  }

  /** Ends the open fault of that kind; false when none was on. */
  private end(t: number, server: string, kind: Kind): boolean {
    const f = this.open.get(`${server}/${kind}`);
    if (!f) return false;
    f.until = t;
    this.open.delete(`${server}/${kind}`);
    return true;
  }

  private note(t: number, a: ScheduledAction, detail?: string): void {
    this.faults.push({ t, action: a.action, server: a.server, ...(detail !== undefined && { detail }) });
  }
}

const UNDO_OF: Partial<Record<ScheduledAction['action'], ScheduledAction['action']>> = { blackhole: 'heal', partition: 'unpartition', pause: 'resume', slow: 'clear' };
const round = (n: number): number => Math.round(n * 100) / 100;
