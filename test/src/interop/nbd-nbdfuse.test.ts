import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DISK_BYTES, exportForTest, haveTools, run } from './nbd-harness.js';

const MiB = 1 << 20;

// The export lives in this process: only async fs calls may touch the FUSE file, or the event
// loop that must answer the NBD requests behind them would be blocked.
test('nbdfuse shows the export as a file that reads back what was written', { timeout: 120_000 }, async (t) => {
  if (!haveTools(t, 'nbdfuse', 'umount')) return;
  if (!existsSync('/dev/fuse')) {
    if (process.env.CI === 'true') throw new Error('/dev/fuse is missing (required when CI=true)');
    t.skip('no /dev/fuse');
    return;
  }
  const { uri, dir } = await exportForTest(t);
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  const fuse = spawn('nbdfuse', [mnt, uri], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  fuse.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => fuse.once('exit', (code) => resolve(code)));
  try {
    await useMountedFile(join(mnt, 'nbd'), () => stderr);
  } finally {
    // Before the export closes (t.after hooks run later): nbdfuse exits once unmounted.
    await run('umount', [mnt]);
    const timer = setTimeout(() => fuse.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
});

async function useMountedFile(file: string, stderr: () => string): Promise<void> {
  for (let i = 0; i < 100 && !(await stat(file).then((s) => s.size === DISK_BYTES, () => false)); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal((await stat(file)).size, DISK_BYTES, `nbdfuse did not mount: ${stderr()}`);

  const data = randomBytes(3 * MiB + 12345);
  const fh = await open(file, 'r+');
  try {
    await fh.write(data, 0, data.length, 5 * MiB + 7);
    await fh.sync();
    const back = Buffer.alloc(data.length);
    await fh.read(back, 0, back.length, 5 * MiB + 7);
    assert.ok(back.equals(data), 'read back differs');
    const before = Buffer.alloc(4096, 1);
    await fh.read(before, 0, before.length, 5 * MiB + 7 - 4096);
    assert.ok(before.equals(Buffer.alloc(4096)), 'bytes before the write are not zero');
  } finally {
    await fh.close();
  }
}
