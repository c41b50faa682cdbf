import type { Backend } from './backend.js';

/** Which operations a filter applies to, and where. */
export interface FilterMatch {
  ops?: Array<'read' | 'write' | 'flush' | 'discard' | 'writeZeroes'>;
  /** Only requests whose range starts at this offset. */
  offset?: number;
  /** Applies to the first `count` matching requests only (default: all). */
  count?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A filter that holds matching requests for `ms` before passing them on: a fault injector for
 * tests and experiments (like nbdkit's delay filter), e.g. to hold an old-epoch write in flight.
 */
export function delayFilter(inner: Backend, ms: number, match: FilterMatch = {}): Backend {
  let left = match.count ?? Infinity;
  const hit = (op: NonNullable<FilterMatch['ops']>[number], offset?: number) => {
    if (match.ops && !match.ops.includes(op)) return false;
    if (match.offset !== undefined && offset !== match.offset) return false;
    if (left <= 0) return false;
    left--;
    return true;
  };
  const wait = async (op: NonNullable<FilterMatch['ops']>[number], offset?: number) => {
    if (hit(op, offset)) await sleep(ms);
  };
  return {
    // Read through at use: the inner backend's size may change (Backend.info).
    get info() { return inner.info; },
    description: `delay(${ms}ms):${inner.description}`,
    read: async (c, o, l) => { await wait('read', o); return inner.read(c, o, l); },
    write: async (c, o, d, f) => { await wait('write', o); return inner.write(c, o, d, f); },
    flush: async (c) => { await wait('flush'); return inner.flush(c); },
    discard: async (c, o, l) => { await wait('discard', o); return inner.discard(c, o, l); },
    writeZeroes: async (c, o, l, n, f) => { await wait('writeZeroes', o); return inner.writeZeroes(c, o, l, n, f); },
    readMeta: () => inner.readMeta(),
    writeMeta: (d) => inner.writeMeta(d),
    close: () => inner.close(),
  };
}
