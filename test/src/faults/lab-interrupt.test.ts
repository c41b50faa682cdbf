// Ctrl-C during `wsblk lab run`: the run stops, says so in one line, exits 1, and leaves no
// process behind (servers, daemon, fio: each carries the marker the test gives the run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WSBLK, requireTool, sleep, startProc, tempDir } from '../support/procs.js';

const SCENARIO = `
name: interrupted
duration: 40
servers:
  - { name: s1, export: memory:16M }
  - { name: s2, export: file:16M }
device: { minInSync: 1 }
workload: { kind: fio, iodepth: 4, size: 8M }
schedule:
  - { at: 2, action: blackhole, server: s2, for: 30 }
`;

/** Pids of the processes whose environment holds marker. */
function marked(marker: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'latin1').includes(marker)) out.push(Number(pid));
    } catch { /* gone, or not ours to read */ }
  }
  return out;
}

test('lab run: SIGINT mid-run stops every server, the daemon and fio, and exits 1 with one line', { timeout: 60_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const dir = tempDir(t);
  const file = join(dir, 'interrupted.yaml');
  writeFileSync(file, SCENARIO);
  const marker = `WSBLK_LAB_TEST_MARK=${randomBytes(8).toString('hex')}`;
  const [k, v] = marker.split('=') as [string, string];
  const p = startProc(process.execPath, [WSBLK, 'lab', 'run', file, '--out', join(dir, 'out'), '--quiet'], { [k]: v });
  // Wait until fio runs (the servers and the daemon are up by then).
  const deadline = Date.now() + 30_000;
  while (!marked(marker).some((pid) => readFileSync(`/proc/${pid}/cmdline`, 'latin1').startsWith('fio'))) {
    if (Date.now() > deadline || p.child.exitCode !== null) throw new Error(`fio never ran:\n${p.output()}`);
    await sleep(100);
  }
  assert.ok(marked(marker).length >= 5, 'lab, two servers, the daemon and fio run');
  p.child.kill('SIGINT');
  const code = await p.exited;
  assert.equal(code, 1, p.output());
  assert.match(p.output(), /^wsblk: lab run interrupted: interrupted by SIGINT\n$/);
  await sleep(200);
  assert.deepEqual(marked(marker), [], 'nothing the run started is left');
});
