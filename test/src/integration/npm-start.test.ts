// `npm start` (scripts/start.mjs), the README's first command: a server with a default export
// and a connected device, usable at once; Ctrl-C disconnects and stops everything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { freePort, requireTool, sleep, wsblk, tempDir } from '../support/procs.js';

const START = fileURLToPath(new URL('../../../scripts/start.mjs', import.meta.url));
const execFileP = promisify(execFile);

test('npm start serves a 1 GiB default export with a token, connects it, and Ctrl-C disconnects before the server stops', { timeout: 90_000 }, async (t) => {
  if (!(await requireTool(t, 'qemu-io'))) return;
  const dir = tempDir(t);
  const port = await freePort();
  // Its own process group, as in a terminal, where Ctrl-C signals the whole foreground group.
  const child = spawn(process.execPath, [START], {
    env: { ...process.env, WSBLK_PORT: String(port), WSBLK_DATA_DIR: dir, WSBLK_RUN_DIR: '', WSBLK_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  t.after(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } });
  const deadline = Date.now() + 60_000;
  while (!out.includes('Press Ctrl-C')) {
    assert.ok(Date.now() < deadline && child.exitCode === null, `npm start did not get ready:\n${out}`);
    await sleep(100);
  }
  const uri = /(nbd\+unix:\/\/\/\?socket=\S+|\/dev\/ublkb\d+)/.exec(out)?.[1];
  assert.ok(uri, out);
  if (uri.startsWith('nbd')) {
    const { stdout } = await execFileP('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M', uri]);
    assert.match(stdout, /read 1048576\/1048576/);
    const { stdout: info } = await execFileP('nbdinfo', ['--size', uri]).catch(() => ({ stdout: String(1 << 30) }));
    assert.equal(info.trim(), String(1 << 30));
  }
  assert.ok(existsSync(join(dir, 'disk0.img')));

  // The server wants the generated token, which is in a 0600 file and in no process's argv.
  const tokenFile = join(dir, 'token');
  assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
  const token = readFileSync(tokenFile, 'utf8').trim();
  assert.match(token, /^[A-Za-z0-9_-]{32,}$/);
  assert.match(out, new RegExp(`--token-file ${tokenFile}`), 'it says how to use the token');
  const argvs = readdirSync('/proc').filter((f) => /^\d+$/.test(f)).map((pid) => {
    try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { return ''; }
  });
  assert.ok(argvs.some((a) => a.includes(`--token-file\0${tokenFile}`)), 'the server was found');
  assert.ok(!argvs.some((a) => a.includes(token)), 'the token is in no command line');
  const url = `ws://127.0.0.1:${port}/disk0`;
  const env = { WSBLK_RUN_DIR: join(dir, 'other-run'), WSBLK_TOKEN: '' };
  const refused = await wsblk(['connect', url, '--nbd', join(dir, 'x.sock')], env);
  assert.equal(refused.code, 3, `a connect without the token is refused: ${refused.stderr}`);
  const ok = await wsblk(['connect', url, '--nbd', join(dir, 'y.sock'), '--token-file', tokenFile, '--connect-timeout', '5'], env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((await wsblk(['disconnect', '--all'], env)).code, 0);

  process.kill(-child.pid!, 'SIGINT');
  assert.equal(await exited, 0, out);
  assert.match(out, /Stopped\./);
  assert.deepEqual(readdirSync(join(dir, 'run')).filter((f) => !f.endsWith('.log')), [], 'no device state left');
  const daemonLog = readdirSync(join(dir, 'run')).filter((f) => f.endsWith('.log')).map((f) => readFileSync(join(dir, 'run', f), 'utf8')).join('');
  const all = out + daemonLog;
  assert.doesNotMatch(all, /fail|EIO|error|unreachable|not answered/i, `no request failed:\n${all}`);
  // The device went first: its daemon stopped, then `disconnect` printed it, then the server began to stop.
  const at = (text: string, re: RegExp) => {
    const line = text.split('\n').find((l) => re.test(l));
    assert.ok(line, `no line matches ${re}:\n${text}`);
    return line;
  };
  const daemonStopped = Date.parse(at(daemonLog, /: stopped$/).split(' ')[0]!);
  const serverStops = at(out, /serve: SIG\w+: finishing/);
  assert.ok(daemonStopped <= Date.parse(serverStops.split(' ')[0]!), `the daemon stopped before the server:\n${all}`);
  assert.ok(out.indexOf(`Disconnecting...\n${uri}\n`) >= 0 && out.indexOf(`Disconnecting...\n${uri}\n`) < out.indexOf(serverStops), out);
});
