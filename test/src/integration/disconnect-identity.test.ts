// disconnect acts only on what it can tie to the device: the daemon and supervisor it recorded
// (pid and start time), the NBD socket its daemon created (device and inode). A pid is reused,
// a socket path is bound again by the next device; neither may be killed or removed.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, requireTool, sleep, startServer, tempDir, wsblk } from '../support/procs.js';

const execFileP = promisify(execFile);
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

function sleeper(t: TestContext): number {
  const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
  t.after(() => { child.kill('SIGKILL'); });
  return child.pid!;
}

test('disconnect --all leaves a process and a file it cannot tie to the device', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const run = join(dir, 'run');
  mkdirSync(run, { mode: 0o700 });
  const bystander = sleeper(t);
  const files = [join(dir, 'notes.txt'), join(dir, 'other.txt')];
  for (const f of files) writeFileSync(f, 'mine\n');
  const base = { kind: 'nbd', url: 'ws://127.0.0.1:1/x', sessionId: 'x', options: {}, startedAt: new Date().toISOString() };
  // A record with no identity at all (forged, or left by an older wsblk): its daemon pid is dead.
  writeFileSync(join(run, 'nbd0.json'), JSON.stringify({
    ...base, id: 'nbd0', device: `nbd+unix:///?socket=${files[0]}`, pid: 999_999_999, socket: files[0], supervisorPid: bystander,
  }));
  // A record whose processes were reused: same pid, another start time; the file is not its socket.
  writeFileSync(join(run, 'nbd1.json'), JSON.stringify({
    ...base, id: 'nbd1', device: `nbd+unix:///?socket=${files[1]}`, pid: bystander, socket: files[1], supervisorPid: bystander,
    identity: {
      daemon: { pid: bystander, start: '1', boot: 'x' }, supervisor: { pid: bystander, start: '1', boot: 'x' },
      socket: { dev: '1', ino: '1', ctime: '1' },
    },
  }));
  const r = await wsblk(['disconnect', '--all'], { WSBLK_RUN_DIR: run });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(alive(bystander), 'the unrelated process still runs');
  for (const f of files) assert.ok(existsSync(f), `${f} is still there`);
  assert.match(r.stderr, new RegExp(`nbd0: left process ${bystander} running`));
  assert.match(r.stderr, new RegExp(`nbd1: left process ${bystander} running`));
  assert.match(r.stderr, new RegExp(`nbd0: left ${files[0]} in place`));
  assert.match(r.stderr, new RegExp(`nbd1: left ${files[1]} in place`));
  assert.equal((await wsblk(['list'], { WSBLK_RUN_DIR: run })).stdout, 'no devices\n', 'the stale records are gone');
});

test('disconnect of a killed device keeps the socket of the device that took its path over', { timeout: 60_000 }, async (t) => {
  if (!(await requireTool(t, 'nbdinfo'))) return;
  const dir = tempDir(t);
  const port = await freePort();
  await startServer(t, port, ['d0=memory:16M']);
  const env = { WSBLK_RUN_DIR: join(dir, 'run') };
  const sock = join(dir, 'd.sock');
  const url = `ws://127.0.0.1:${port}/d0`;
  t.after(() => wsblk(['disconnect', '--all'], env));
  const first = await wsblk(['connect', url, '--nbd', sock], env);
  assert.equal(first.code, 0, first.stderr);
  const [dev0] = JSON.parse((await wsblk(['list', '--json'], env)).stdout) as Array<{ id: string; pid: number }>;
  assert.equal(dev0!.id, 'nbd0');
  process.kill(dev0!.pid, 'SIGKILL');
  while (alive(dev0!.pid)) await sleep(20);

  const second = await wsblk(['connect', url, '--nbd', sock], env);
  assert.equal(second.code, 0, second.stderr);
  const list = JSON.parse((await wsblk(['list', '--json'], env)).stdout) as Array<{ id: string; state: string }>;
  assert.deepEqual(list.map((d) => [d.id, d.state]), [['nbd0', 'dead'], ['nbd1', 'connected']]);

  const d = await wsblk(['disconnect', 'nbd0'], env);
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stderr, new RegExp(`nbd0: left ${sock} in place`));
  assert.ok(existsSync(sock), 'nbd1\'s socket is still there');
  const { stdout } = await execFileP('nbdinfo', ['--size', `nbd+unix:///?socket=${sock}`]);
  assert.equal(stdout.trim(), String(16 << 20), 'nbd1 still serves');
  const after = JSON.parse((await wsblk(['list', '--json'], env)).stdout) as Array<{ id: string; state: string }>;
  assert.deepEqual(after.map((x) => [x.id, x.state]), [['nbd1', 'connected']]);
});
