// The identities disconnect checks: a process is its pid and start time, whatever its name;
// a file is its inode as created, not its path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileIdentity, isFile, isProcess, processIdentity } from '@wsblk/client';

test('a process\'s start time is read right even when its name holds ") "', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsblk-id-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const exe = join(dir, 'a) (b 1 2');
  copyFileSync('/bin/sleep', exe);
  chmodSync(exe, 0o755);
  const child = spawn(exe, ['1000'], { stdio: 'ignore' });
  t.after(() => { child.kill('SIGKILL'); });
  await new Promise((r) => child.once('spawn', r));
  await new Promise((r) => setTimeout(r, 50));
  const id = processIdentity(child.pid!);
  assert.ok(id, 'identity of a live process');
  const own = processIdentity(process.pid)!;
  const uptimeTicks = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 100;
  // Started after this process, and before now (in clock ticks after boot, 100 per second).
  assert.ok(Number(id.start) >= Number(own.start) && Number(id.start) <= uptimeTicks + 100, `start ${id.start}`);
  assert.equal(id.boot, own.boot);
  assert.ok(isProcess(id, child.pid!));
  assert.ok(!isProcess({ ...id, start: String(Number(id.start) - 1) }, child.pid!), 'another start time is another process');
  assert.ok(!isProcess(id, process.pid), 'another pid');
  assert.ok(!isProcess(undefined, child.pid!), 'nothing recorded, nothing matches');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.ok(!isProcess(id, child.pid!), 'a dead process');
  assert.equal(processIdentity(child.pid!), undefined);
});

test('a file replaced at the same path is not the file recorded', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsblk-id-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'f');
  writeFileSync(path, 'a');
  const id = fileIdentity(path);
  assert.ok(id && isFile(id, path));
  writeFileSync(join(dir, 'g'), 'b');
  renameSync(join(dir, 'g'), path);
  assert.ok(!isFile(id, path));
  rmSync(path);
  assert.equal(fileIdentity(path), undefined);
  assert.ok(!isFile(id, path));
});
