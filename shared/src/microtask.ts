// Work deferred to the end of the current task, as cheaply as Node allows.

const RESOLVED = Promise.resolve();

/**
 * Runs `fn` in this turn's microtask checkpoint, after the microtasks already queued: a reaction
 * to a resolved promise. Node's process.nextTick makes a tick object per call and runs its tick
 * queue in JavaScript, and queueMicrotask wraps each callback in an AsyncResource; on the data
 * path that bookkeeping was measurable per request (bench/RESULTS.md, levers 17 and 20). Pass a
 * function made once (a bound field), not a new closure per call. An exception in `fn` is an
 * unhandled rejection, which ends the process as an uncaught exception would.
 */
export function microtask(fn: () => void): void {
  void RESOLVED.then(fn);
}
