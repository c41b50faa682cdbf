// A run directory another user made (or can write) is refused before anything in it is read:
// its state files could name any process of ours to kill and any file of ours to delete.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WSBLK, requireTool, tempDir, wsblk } from '../support/procs.js';

const NOBODY = 65534;

/** A `sleep 1000` (as uid, if given) that the test kills at its end. */
function victimProcess(t: TestContext, uid?: number): ChildProcess {
  const child = uid === undefined
    ? spawn('sleep', ['1000'], { stdio: 'ignore' })
    : spawn('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'sleep', '1000'], { stdio: 'ignore' });
  t.after(() => { child.kill('SIGKILL'); });
  return child;
}

const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

/** The state file an attacker plants: its supervisor is the victim's process, its socket the victim's file. */
function plantState(dir: string, pid: number, victimFile: string): void {
  writeFileSync(join(dir, 'nbd0.json'), JSON.stringify({
    id: 'nbd0', kind: 'nbd', device: `nbd+unix:///?socket=${victimFile}`, url: 'ws://127.0.0.1:1/x',
    pid: 999_999_999, sessionId: 'x', options: {}, socket: victimFile, supervisorPid: pid, startedAt: new Date().toISOString(),
  }));
}

function assertRefused(r: { code: number; stderr: string }, dir: string, why: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^wsblk: run directory ${dir} `));
  assert.match(r.stderr, why);
  assert.match(r.stderr, /WSBLK_RUN_DIR/, 'the message says how to fix it');
}

test('a run directory owned by another user is refused: disconnect --all kills and deletes nothing', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const run = join(dir, 'foreign');
  mkdirSync(run, { mode: 0o700 });
  const victimFile = join(dir, 'precious.txt');
  writeFileSync(victimFile, 'mine\n');
  const victim = victimProcess(t);
  plantState(run, victim.pid!, victimFile);
  chownSync(run, NOBODY, NOBODY);
  chownSync(join(run, 'nbd0.json'), NOBODY, NOBODY);
  const env = { WSBLK_RUN_DIR: run };
  assertRefused(await wsblk(['list'], env), run, /is owned by uid 65534, not you \(0\)/);
  assertRefused(await wsblk(['disconnect', '--all'], env), run, /owned by uid 65534/);
  assert.ok(alive(victim.pid!), 'the victim\'s process still runs');
  assert.ok(existsSync(victimFile), 'the victim\'s file is still there');
});

test('a run directory writable by others is refused', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const run = join(dir, 'open');
  mkdirSync(run);
  chmodSync(run, 0o777);
  const victimFile = join(dir, 'precious.txt');
  writeFileSync(victimFile, 'mine\n');
  const victim = victimProcess(t);
  plantState(run, victim.pid!, victimFile);
  const env = { WSBLK_RUN_DIR: run };
  assertRefused(await wsblk(['disconnect', '--all'], env), run, /writable by others \(mode 0777\)/);
  assert.ok(alive(victim.pid!));
  assert.ok(existsSync(victimFile));
  chmodSync(run, 0o770);
  assertRefused(await wsblk(['list'], env), run, /writable by its group \(mode 0770\)/);
});

test('a run directory that is a symbolic link is refused', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'real'), { mode: 0o700 });
  symlinkSync(join(dir, 'real'), join(dir, 'link'));
  assertRefused(await wsblk(['list'], { WSBLK_RUN_DIR: join(dir, 'link') }), join(dir, 'link'), /is a symbolic link/);
});

test('a user\'s default run directory /tmp/wsblk-UID, pre-created by another user, is refused', { timeout: 30_000 }, async (t) => {
  if (!(await requireTool(t, 'setpriv'))) return;
  assert.equal(process.getuid?.(), 0, 'this test runs as root, to act as two users');
  // A uid of no other test: its default run directory is ours to plant.
  const uid = 61_000 + Math.floor(Math.random() * 4000);
  const run = `/tmp/wsblk-${uid}`;
  rmSync(run, { recursive: true, force: true });
  t.after(() => rmSync(run, { recursive: true, force: true }));
  const dir = tempDir(t);
  const home = join(dir, 'home');
  mkdirSync(home, { mode: 0o700 });
  chmodSync(dir, 0o755);
  const victimFile = join(home, 'precious.txt');
  writeFileSync(victimFile, 'mine\n');
  chownSync(home, uid, uid);
  chownSync(victimFile, uid, uid);
  const victim = victimProcess(t, uid);
  // The attacker (nobody) made the victim's default run directory first, open to all.
  mkdirSync(run, { mode: 0o777 });
  chmodSync(run, 0o777);
  plantState(run, victim.pid!, victimFile);
  chownSync(run, NOBODY, NOBODY);
  const asVictim = (args: string[]) => {
    const env = { ...process.env };
    delete env.WSBLK_RUN_DIR;
    delete env.XDG_RUNTIME_DIR;
    const r = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, WSBLK, ...args],
      { env, encoding: 'utf8', timeout: 20_000 });
    return { code: r.status ?? -1, stderr: r.stderr };
  };
  await new Promise((r) => setTimeout(r, 200)); // setpriv has exec'd sleep
  assertRefused(asVictim(['list']), run, new RegExp(`is owned by uid 65534, not you \\(${uid}\\)`));
  assertRefused(asVictim(['disconnect', '--all']), run, /owned by uid 65534/);
  assert.ok(alive(victim.pid!), 'the victim\'s process still runs');
  assert.ok(existsSync(victimFile), 'the victim\'s file is still there');
  // Its own directory (made by wsblk, mode 0700) is fine.
  rmSync(run, { recursive: true, force: true });
  const ok = asVictim(['list']);
  assert.equal(ok.code, 0, ok.stderr);
});
