// The faults set on a server, by name: what the admin API and `serve --faults` change, and
// what the storage filters (per export) and the connections (transport) read on each request.
// Readers look at one boolean first (ExportFaults.active, TransportFaults.active), so a server
// with no fault set pays one property read per request.
import { logger } from '@wsblk/shared';
import { FaultSpecError, describeFault, isStorageKind, parseFault, type FaultKind, type FaultSpec, type OpKind } from './fault-spec.js';

const log = logger('faults');

/** A fault as set, with its firing count. */
export class ActiveFault {
  hits = 0;
  private left: number;

  constructor(readonly spec: FaultSpec) {
    this.left = spec.count ?? Infinity;
  }

  /** Whether it is aimed at this session (the probability aside); the client id is looked up only if needed. */
  aims(session: string, client: () => string | undefined): boolean {
    const s = this.spec;
    if (s.session !== undefined && !session.startsWith(s.session)) return false;
    if (s.client !== undefined && client() !== s.client) return false;
    return true;
  }

  /** Whether it covers this operation (storage faults). */
  covers(op: OpKind): boolean {
    return this.spec.ops === undefined || this.spec.ops.includes(op);
  }

  /** Takes one firing: within the count, and with its probability (storage: per request). */
  fire(): boolean {
    if (this.spec.probability < 1 && Math.random() >= this.spec.probability) return false;
    return this.spend();
  }

  /** Takes one firing within the count, the probability decided elsewhere (transport: per connection). */
  spend(): boolean {
    if (this.left <= 0) return false;
    this.left--;
    this.hits++;
    return true;
  }
}

/** What the crash filter reports when its unflushed writes are dropped. */
export interface CrashReport {
  writes: number;
  bytes: number;
}

/** The storage faults of one export, as its filter reads them. */
export class ExportFaults {
  active = false;
  faults: ActiveFault[] = [];
  /** Set by the export's filter: called after every change (held requests look again). */
  onChange: () => void = () => {};
  /** Set by the export's filter: resolves once no request a pause fault holds is running. */
  drain: (f: ActiveFault) => Promise<void> = async () => {};
  /** Set by the export's filter: drops the writes not flushed. */
  crash: () => CrashReport = () => ({ writes: 0, bytes: 0 });

  constructor(readonly name: string, readonly clientOf: (session: string) => string | undefined) {}

  has(kind: FaultKind): boolean {
    return this.faults.some((f) => f.spec.kind === kind);
  }
}

/** A connection's view: the transport faults it may be subject to. */
export interface Link {
  /** The faults changed: queued messages go out at once if nothing holds them any more. */
  refresh(): void;
}

/** The transport faults of a server, read by every connection. */
export class TransportFaults {
  active = false;
  faults: ActiveFault[] = [];
  readonly links = new Set<Link>();
}

export class FaultTable {
  readonly transport = new TransportFaults();
  private readonly byName = new Map<string, ActiveFault>();
  private readonly exports = new Map<string, ExportFaults>();
  private counter = 0;
  /** The client id of a session of an export (its hello's), set by the server: faults for one client match on it. */
  clientOf: (session: string, exportName: string) => string | undefined = () => undefined;

  /** The view an export's filter reads; every export is registered before faults are set. */
  addExport(name: string): ExportFaults {
    let v = this.exports.get(name);
    if (!v) this.exports.set(name, (v = new ExportFaults(name, (session) => this.clientOf(session, name))));
    return v;
  }

  list(): Array<FaultSpec & { hits: number }> {
    return [...this.byName.values()].map((f) => ({ ...f.spec, hits: f.hits }));
  }

  /**
   * Sets (or replaces, by name) one fault; `who` says who asked, for the log. A pause resolves
   * once the requests it holds back have drained.
   */
  async set(body: unknown, who: string): Promise<FaultSpec> {
    const spec = parseFault(body, (kind) => this.freshName(kind));
    if (spec.export !== undefined && !this.exports.has(spec.export)) {
      throw new FaultSpecError(`no export '${spec.export}' (exports: ${[...this.exports.keys()].join(', ') || 'none'})`);
    }
    const old = this.byName.get(spec.name);
    if (old && isStorageKind(old.spec.kind) !== isStorageKind(spec.kind)) {
      throw new FaultSpecError(`fault '${spec.name}' exists as a ${old.spec.kind}: clear it first`);
    }
    const fault = new ActiveFault(spec);
    this.byName.set(spec.name, fault);
    this.rebuild();
    log.info(`fault ${old ? 'replaced' : 'set'} by ${who}: ${describeFault(spec)}`);
    if (spec.kind === 'pause') {
      await Promise.all(this.viewsOf(spec).map((v) => v.drain(fault)));
      log.info(`fault ${spec.name}: paused, in-flight requests drained`);
    }
    return spec;
  }

  /** Clears one fault by name (false: no such fault), or all of them (name undefined). */
  clear(name: string | undefined, who: string): number {
    const names = name === undefined ? [...this.byName.keys()] : this.byName.has(name) ? [name] : [];
    for (const n of names) this.byName.delete(n);
    if (names.length) {
      this.rebuild();
      log.info(`fault${names.length > 1 ? 's' : ''} cleared by ${who}: ${names.join(', ')}`);
    }
    return names.length;
  }

  /** Crashes the export of crash fault `name`: its writes not flushed are dropped. */
  crash(name: string, who: string): CrashReport {
    const f = this.byName.get(name);
    if (!f) throw new FaultSpecError(`no fault '${name}'`);
    if (f.spec.kind !== 'crash') throw new FaultSpecError(`fault '${name}' is a ${f.spec.kind}, not a crash`);
    const report = this.exports.get(f.spec.export!)!.crash();
    f.hits++;
    log.info(`fault ${name} crashed by ${who}: export '${f.spec.export}' lost ${report.writes} unflushed writes (${report.bytes} bytes)`);
    return report;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  private freshName(kind: FaultKind): string {
    let n: string;
    do n = `${kind}-${++this.counter}`; while (this.byName.has(n));
    return n;
  }

  private viewsOf(spec: FaultSpec): ExportFaults[] {
    return spec.export === undefined ? [...this.exports.values()] : [this.exports.get(spec.export)!];
  }

  /** Recomputes what each reader sees, then lets them look again (held requests, queued messages). */
  private rebuild(): void {
    const all = [...this.byName.values()];
    for (const v of this.exports.values()) {
      v.faults = all.filter((f) => isStorageKind(f.spec.kind) && (f.spec.export === undefined || f.spec.export === v.name));
      v.active = v.faults.length > 0;
    }
    const t = this.transport;
    t.faults = all.filter((f) => !isStorageKind(f.spec.kind));
    t.active = t.faults.length > 0;
    for (const v of this.exports.values()) v.onChange();
    for (const l of t.links) l.refresh();
  }
}
