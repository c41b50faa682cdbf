// The storage faults of one export as a Backend filter (like nbdkit's delay, error and pause
// filters, dm-dust for bad ranges), switched at run time through its ExportFaults: each request
// is held while a pause covers it, then delayed, then failed, or passed on to the crash overlay
// and the backend. readMeta/writeMeta (the membership record) pass through untouched.
import type { Backend, RequestContext } from '../backend/backend.js';
import { CrashOverlay } from './crash-overlay.js';
import type { OpKind } from './fault-spec.js';
import type { ActiveFault, ExportFaults } from './fault-table.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A request that passed the pause gate and has not finished. */
interface Running {
  ctx: RequestContext;
  op: OpKind;
}

/** The error a fault answers with: statusOfError() maps its code to the reply's errno. */
function faultError(f: ActiveFault, what: string): Error {
  const errno = f.spec.errno ?? 'EIO';
  return Object.assign(new Error(`fault ${f.spec.name}: ${what} (${errno})`), { code: errno });
}

export function faultFilter(inner: Backend, view: ExportFaults): Backend {
  const below = new CrashOverlay(inner, view);
  /** Requests running below the gate while faults were set; `untracked` counts the others. */
  const running = new Set<Running>();
  let untracked = 0;
  let held: Array<() => void> = [];
  let drainWaiters: Array<() => void> = [];

  const pausedFor = (op: OpKind, ctx: RequestContext): boolean =>
    view.faults.some((f) => f.spec.kind === 'pause' && f.covers(op) && f.aims(ctx.session, () => view.clientOf(ctx.session)));

  const finished = () => {
    const w = drainWaiters;
    drainWaiters = [];
    for (const f of w) f();
  };

  view.onChange = () => {
    below.settle();
    // Held requests look again: the pause that held them may be gone.
    const h = held;
    held = [];
    for (const f of h) f();
  };
  view.drain = async (pause) => {
    const busy = () => untracked > 0 || [...running].some((r) => pause.covers(r.op) && pause.aims(r.ctx.session, () => view.clientOf(r.ctx.session)));
    while (busy()) await new Promise<void>((r) => drainWaiters.push(r));
  };

  /** What a request meets before it reaches the backend, once past the pause (in flight from then on). */
  async function strike(op: OpKind, ctx: RequestContext, offset: number, length: number): Promise<void> {
    for (const f of view.faults) {
      const s = f.spec;
      if (s.kind !== 'delay' || !f.covers(op) || !f.aims(ctx.session, () => view.clientOf(ctx.session)) || !f.fire()) continue;
      const jitter = s.jitter ? (Math.random() * 2 - 1) * s.jitter : 0;
      await sleep(Math.max(0, s.ms! + jitter));
    }
    for (const f of view.faults) {
      const s = f.spec;
      if (s.kind === 'error' && f.covers(op) && f.aims(ctx.session, () => view.clientOf(ctx.session)) && f.fire()) throw faultError(f, `${op} failed`);
      if (s.kind === 'bad-range' && (s.ops ? f.covers(op) : op === 'read' || op === 'write') && op !== 'flush'
        && offset < s.offset! + s.length! && offset + length > s.offset! && f.aims(ctx.session, () => view.clientOf(ctx.session)) && f.fire()) {
        throw faultError(f, `${op} ${offset}+${length} meets bad range ${s.offset}+${s.length}`);
      }
    }
  }

  function run<T>(op: OpKind, ctx: RequestContext, offset: number, length: number, call: () => Promise<T>): Promise<T> {
    if (!view.active) {
      untracked++;
      const p = call();
      const done = () => { if (--untracked === 0) finished(); };
      p.then(done, done);
      return p;
    }
    return (async () => {
      while (view.active && pausedFor(op, ctx)) await new Promise<void>((r) => held.push(r));
      const r: Running = { ctx, op };
      running.add(r);
      try {
        if (view.active) await strike(op, ctx, offset, length);
        return await call();
      } finally {
        running.delete(r);
        finished();
      }
    })();
  }

  return {
    get info() { return inner.info; },
    description: `faults:${inner.description}`,
    read: (c, o, l) => run('read', c, o, l, () => below.read(c, o, l)),
    write: (c, o, d, f) => run('write', c, o, d.length, () => below.write(c, o, d, f)),
    flush: (c) => run('flush', c, 0, 0, () => below.flush(c)),
    discard: (c, o, l) => run('discard', c, o, l, () => below.discard(c, o, l)),
    writeZeroes: (c, o, l, n, f) => run('writeZeroes', c, o, l, () => below.writeZeroes(c, o, l, n, f)),
    readMeta: () => inner.readMeta(),
    writeMeta: (d) => inner.writeMeta(d),
    close: () => below.close(),
  };
}
