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
    info: inner.info,
    description: `delay(${ms}ms):${inner.description}`,
    read: async (o, l) => { await wait('read', o); return inner.read(o, l); },
    write: async (o, d, f) => { await wait('write', o); return inner.write(o, d, f); },
    flush: async () => { await wait('flush'); return inner.flush(); },
    discard: async (o, l) => { await wait('discard', o); return inner.discard(o, l); },
    writeZeroes: async (o, l, n, f) => { await wait('writeZeroes', o); return inner.writeZeroes(o, l, n, f); },
    close: () => inner.close(),
  };
}
