/** A promise that was not settled in time. */
export class NoAnswer extends Error {
  override name = 'NoAnswer';
}

/**
 * `p`, or a rejection with `fail()` (by default a NoAnswer) after `ms` (0: no limit). The timer
 * is cleared either way.
 */
export function deadline<T>(p: Promise<T>, ms: number, fail: () => Error = () => new NoAnswer(`no answer within ${ms / 1000} s`)): Promise<T> {
  if (ms <= 0) return p;
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(fail()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
