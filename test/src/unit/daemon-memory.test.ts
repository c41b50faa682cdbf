// tuneDaemonMemory (client/src/daemon/memory.ts): the daemon's young generation stays small,
// and glibc's trim threshold is set. Each case runs in a child process of its own, since both
// settings last for the life of a process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mallocTrimThreshold } from '@wsblk/native';

/**
 * The module alone: importing all of @wsblk/client (prom-client among it) may already grow the
 * young generation before the flag is set, which is why a daemon sets it first (client/bin/wsblk.js).
 */
const MEMORY_MODULE = new URL('../../../client/dist/daemon/memory.js', import.meta.url).href;

/** Size of V8's new space (MiB) in a fresh node after allocation churn, with or without tuning. */
function newSpaceAfterChurn(tuned: boolean): number {
  const script = `
    const { getHeapSpaceStatistics } = await import('node:v8');
    ${tuned ? `(await import(${JSON.stringify(MEMORY_MODULE)})).tuneDaemonMemory();` : ''}
    let keep = [];
    for (let i = 0; i < 2e6; i++) { keep.push({ i, a: [i] }); if (keep.length > 5000) keep = []; }
    const s = getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');
    console.log(s.space_size / 1048576);`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  return Number(out.trim());
}

test('the young generation of a tuned process stays at its first size; untuned it grows', () => {
  const untuned = newSpaceAfterChurn(false);
  const tuned = newSpaceAfterChurn(true);
  assert.ok(untuned > 4, `untuned new space ${untuned} MiB: the churn should make V8 grow it`);
  assert.ok(tuned <= 4, `tuned new space ${tuned} MiB`);
});

test('mallocTrimThreshold sets glibc\'s threshold and refuses a bad value', () => {
  assert.equal(mallocTrimThreshold(1 << 20), true);
  assert.throws(() => mallocTrimThreshold(-1), /mallocTrimThreshold\(bytes >= 0\)/);
  assert.throws(() => (mallocTrimThreshold as (x: unknown) => boolean)('1M'), TypeError);
});
