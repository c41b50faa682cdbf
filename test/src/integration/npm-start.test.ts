// `npm start` (scripts/start.mjs), the README's first command: a server with a default export
// and a connected device, usable at once; Ctrl-C disconnects and stops everything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { freePort, requireTool, sleep, startProc, tempDir } from '../support/procs.js';

const START = fileURLToPath(new URL('../../../scripts/start.mjs', import.meta.url));
const execFileP = promisify(execFile);

test('npm start serves a 1 GiB default export, connects it, and Ctrl-C stops it cleanly', { timeout: 90_000 }, async (t) => {
  if (!(await requireTool(t, 'qemu-io'))) return;
  const dir = tempDir(t);
  const port = await freePort();
  const p = startProc(process.execPath, [START], { WSBLK_PORT: String(port), WSBLK_DATA_DIR: dir, WSBLK_RUN_DIR: '' });
  t.after(() => { p.child.kill('SIGKILL'); });
  const deadline = Date.now() + 60_000;
  while (!p.output().includes('Press Ctrl-C')) {
    assert.ok(Date.now() < deadline && p.child.exitCode === null, `npm start did not get ready:\n${p.output()}`);
    await sleep(100);
  }
  const uri = /(nbd\+unix:\/\/\/\?socket=\S+|\/dev\/ublkb\d+)/.exec(p.output())?.[1];
  assert.ok(uri, p.output());
  if (uri.startsWith('nbd')) {
    const { stdout } = await execFileP('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M', uri]);
    assert.match(stdout, /read 1048576\/1048576/);
    const { stdout: info } = await execFileP('nbdinfo', ['--size', uri]).catch(() => ({ stdout: String(1 << 30) }));
    assert.equal(info.trim(), String(1 << 30));
  }
  assert.ok(existsSync(join(dir, 'disk0.img')));
  p.child.kill('SIGINT');
  const code = await p.exited;
  assert.equal(code, 0, p.output());
  assert.match(p.output(), /Stopped\./);
  assert.deepEqual(readdirSync(join(dir, 'run')).filter((f) => !f.endsWith('.log')), [], 'no device state left');
});
