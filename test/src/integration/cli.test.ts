// The wsblk CLI as a user and a script meet it: real processes, real sockets, exit codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { WSBLK, freePort, requireTool, startServer, tempDir, wsblk } from '../support/procs.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

test('connect prints the NBD URI, list shows the device, disconnect removes it and its files', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  await startServer(t, port, ['d0=memory:64M', 'd1=memory:64M']);
  const env = { WSBLK_RUN_DIR: join(dir, 'run') };
  const sock = join(dir, 'd0.sock');
  const c = await wsblk(['connect', `ws://127.0.0.1:${port}/d0`, '--nbd', sock], env);
  t.after(() => wsblk(['disconnect', '--all'], env));
  assert.equal(c.code, 0, c.stderr);
  assert.equal(c.stdout, `nbd+unix:///?socket=${sock}\n`);
  assert.ok(existsSync(sock));

  const l = await wsblk(['list', '--json'], env);
  assert.equal(l.code, 0, l.stderr);
  const list = JSON.parse(l.stdout) as Array<Record<string, unknown>>;
  assert.equal(list.length, 1);
  for (const key of ['id', 'kind', 'device', 'url', 'pid', 'state', 'inflight', 'reconnects']) assert.ok(key in list[0]!, `list has ${key}`);
  assert.equal(list[0]!.kind, 'nbd');
  assert.equal(list[0]!.state, 'connected');
  assert.equal(list[0]!.url, `ws://127.0.0.1:${port}/d0`);
  const pid = list[0]!.pid as number;

  const text = await wsblk(['list'], env);
  assert.match(text.stdout, /^ID\s+KIND\s+DEVICE/);
  assert.match(text.stdout, /nbd0\s+nbd\s+nbd\+unix/);

  // A second device on the same socket path is refused, and leaves nothing behind. (Another
  // export: a second writer of d0 would be refused by the server first, one writer per export.)
  const dup = await wsblk(['connect', `ws://127.0.0.1:${port}/d1`, '--nbd', sock], env);
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /in use/);
  assert.equal(dup.stderr.trim().split('\n').length <= 4, true, dup.stderr);
  assert.equal(JSON.parse((await wsblk(['list', '--json'], env)).stdout).length, 1);

  const d = await wsblk(['disconnect', 'nbd0'], env);
  assert.equal(d.code, 0, d.stderr);
  assert.equal(d.stdout.trim(), `nbd+unix:///?socket=${sock}`);
  assert.ok(!existsSync(sock), 'socket removed');
  assert.throws(() => process.kill(pid, 0), 'daemon exited');
  assert.deepEqual(readdirSync(join(dir, 'run')).filter((f) => !f.endsWith('.log')), []);
  assert.equal((await wsblk(['list'], env)).stdout, 'no devices\n');
});

test('the NBD export of a connected device works with qemu-io', { timeout: 60_000 }, async (t) => {
  if (!(await requireTool(t, 'qemu-io'))) return;
  const dir = tempDir(t);
  const port = await freePort();
  await startServer(t, port, [`d0=file:${join(dir, 'd0.img')},size=64M`]);
  const env = { WSBLK_RUN_DIR: join(dir, 'run') };
  const c = await wsblk(['connect', `ws://127.0.0.1:${port}/d0`, '--nbd', join(dir, 'd0.sock'), '--compress', 'lz4'], env);
  t.after(() => wsblk(['disconnect', '--all'], env));
  assert.equal(c.code, 0, c.stderr);
  const uri = c.stdout.trim();
  const { stdout } = await execFileP('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 1M', '-c', 'read -P 0x5a 1M 1M', '-c', 'flush', uri]);
  assert.match(stdout, /read 1048576\/1048576 bytes at offset 1048576/);
  assert.doesNotMatch(stdout, /Pattern verification failed/);
});

test('connect fails with one clear line and exit code 3 when the server is down', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const r = await wsblk(['connect', `ws://127.0.0.1:${port}/d0`, '--nbd', join(dir, 's.sock'), '--connect-timeout', '1'], { WSBLK_RUN_DIR: join(dir, 'run') });
  assert.equal(r.code, 3);
  assert.match(r.stderr, /^wsblk: cannot connect to ws:\/\/127\.0\.0\.1:\d+\/d0: connection refused/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.deepEqual(readdirSync(join(dir, 'run')).filter((f) => !f.endsWith('.log')), [], 'no state left behind');
  assert.ok(!existsSync(join(dir, 's.sock')));
});

test('connect refuses a wrong token (401), a forbidden export (403) and an unknown export (404) with exit code 3', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const tokens = join(dir, 'tokens');
  writeFileSync(tokens, '# test tokens\ngood-token-0001 d0 rw\n');
  const port2 = port;
  const { startProc, waitForPort, WSBLK } = await import('../support/procs.js');
  const s2 = startProc(process.execPath, [WSBLK, 'serve', '--listen', `127.0.0.1:${port2}`, '--export', 'd0=memory:16M', '--export', 'd1=memory:16M', '--token-file', tokens]);
  t.after(() => { s2.child.kill('SIGKILL'); });
  await waitForPort(port2);
  const env = { WSBLK_RUN_DIR: join(dir, 'run') };
  const bad = join(dir, 'bad-token');
  writeFileSync(bad, 'wrong-token-9999\n');
  const cases: Array<[string[], RegExp]> = [
    [[`ws://127.0.0.1:${port2}/d0`, '--token-file', bad], /token refused: unknown token/],
    [[`ws://127.0.0.1:${port2}/d0`], /token refused: a bearer token is required/],
    [[`ws://127.0.0.1:${port2}/d1`, '--token-file', tokens], /forbidden: token may not open export 'd1'/],
    [[`ws://127.0.0.1:${port2}/nope`, '--token-file', tokens], /unknown export: no export 'nope'/],
  ];
  for (const [args, re] of cases) {
    const r = await wsblk(['connect', ...args, '--nbd', join(dir, 'x.sock')], { ...env, WSBLK_TOKEN: '' });
    assert.equal(r.code, 3, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  const ok = await wsblk(['connect', `ws://127.0.0.1:${port2}/d0`, '--token-file', tokens, '--nbd', join(dir, 'ok.sock')], env);
  t.after(() => wsblk(['disconnect', '--all'], env));
  assert.equal(ok.code, 0, ok.stderr);
});

test('bad command lines exit 2 with a clear message', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['connect', 'not a url', '--nbd', '/tmp/x.sock'], /is not a URL/],
    [['connect', 'http://h/d0', '--nbd', '/tmp/x.sock'], /scheme must be ws:\/\/ or wss:\/\//],
    [['connect', 'ws://h:1/', '--nbd', '/tmp/x.sock'], /no export name/],
    [['connect', 'ws://h/d0', '--compress', 'zstd'], /Allowed choices are lz4, none/],
    [['connect', 'ws://h/d0', '--io-timeout', 'soon'], /not a number of seconds/],
    [['connect', 'ws://h/d0', '--block-size', '1000'], /'1000' is not 512 or 4096/],
    [['connect', 'ws://h/d0', '--depth', '0'], /not a whole number from 1 to 4096/],
    [['connect', 'ws://h/d0', '--nbd', '/tmp/x.sock', '--assume-clean'], /--assume-clean are for a replica set/],
    [['connect', 'ws://h:1/d0,ws://h:2/d0', '--nbd', '/tmp/x.sock', '--assume-clean', '--force-in-sync', 'ws://h:1/d0'], /do not go together/],
    [['serve'], /at least one --export/],
    [['serve', '--export', 'd0=tape:/dev/st0'], /unknown backend 'tape'/],
    [['serve', '--export', 'd0=memory:12Q'], /invalid size/],
    [['serve', '--export', 'd0=memory:1000'], /multiple of the block size/],
    [['disconnect'], /name a device/],
    [['frobnicate'], /unknown command/],
  ];
  for (const [args, re] of cases) {
    const r = await wsblk(args, { WSBLK_RUN_DIR: '/tmp/wsblk-cli-test-run' });
    assert.equal(r.code, 2, `${args.join(' ')} -> ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
});

test('disconnect of an unknown device exits 4', async () => {
  const r = await wsblk(['disconnect', 'nbd42'], { WSBLK_RUN_DIR: '/tmp/wsblk-cli-test-run' });
  assert.equal(r.code, 4);
  assert.match(r.stderr, /no device 'nbd42'/);
});

test('serve fails with one line when the port is taken', async (t) => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.after(() => blocker.close());
  const port = (blocker.address() as { port: number }).port;
  const r = await wsblk(['serve', '--listen', `127.0.0.1:${port}`, '--export', 'd0=memory:1M']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /address in use/);
});

test('every command has --help that exits 0', async () => {
  for (const cmd of [[], ['serve'], ['connect'], ['disconnect'], ['list']]) {
    const r = await wsblk([...cmd, '--help']);
    assert.equal(r.code, 0, cmd.join(' '));
    assert.match(r.stdout, /Usage: wsblk/);
    assert.match(r.stdout, /Exit codes:/);
  }
});

test('output into a pipe whose reader has gone is dropped quietly (no EPIPE crash)', async () => {
  // `true` exits before node has started, so every write to stdout fails with EPIPE.
  for (const cmd of ['--help', 'connect --help', 'list']) {
    const r = await execFileP('bash', ['-o', 'pipefail', '-c', `"${process.execPath}" "${WSBLK}" ${cmd} | true`], {
      env: { ...process.env, WSBLK_RUN_DIR: '/nonexistent-wsblk-run' },
    }).then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }));
    assert.equal(r.stderr, '', cmd);
    assert.equal(r.code, 0, cmd);
  }
});

test('disconnect finishes when the server is gone and a client waits on I/O (the I/O fails)', { timeout: 90_000 }, async (t) => {
  if (!(await requireTool(t, 'qemu-io'))) return;
  const dir = tempDir(t);
  const port = await freePort();
  const server = await startServer(t, port, ['d0=memory:64M']);
  const env = { WSBLK_RUN_DIR: join(dir, 'run') };
  const c = await wsblk(['connect', `ws://127.0.0.1:${port}/d0`, '--nbd', join(dir, 'd0.sock')], env);
  t.after(() => wsblk(['disconnect', '--all'], env));
  assert.equal(c.code, 0, c.stderr);
  server.child.kill('SIGKILL');
  await server.exited;
  const reader = execFileP('qemu-io', ['-f', 'raw', '-c', 'read 0 64k', c.stdout.trim()]).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, out: `${e.stdout}${e.stderr}` }),
  );
  await new Promise((r) => setTimeout(r, 1000));
  const t0 = Date.now();
  const d = await wsblk(['disconnect', 'nbd0'], env, 60_000);
  assert.equal(d.code, 0, d.stderr);
  // The daemon waits 5 s for the server, then fails what is outstanding (not 10 s + 15 s of timeouts).
  assert.ok(Date.now() - t0 < 15_000, `disconnect took ${Date.now() - t0} ms`);
  const r = await reader;
  assert.ok(r.code !== 0 || /error|failed/i.test(r.out), `the waiting read failed: ${r.code} ${r.out}`);
  assert.deepEqual(readdirSync(join(dir, 'run')).filter((f) => !f.endsWith('.log')), []);
});

test('a token in the URL (ws://:TOKEN@host/x) is used, and is in none of argv, the state file, the log, list or list --json', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const token = 'url-token-7f3a9c1e5b';
  const tokens = join(dir, 'tokens');
  writeFileSync(tokens, `${token} d0,d1 rw\n`);
  const { startProc, waitForPort } = await import('../support/procs.js');
  const s = startProc(process.execPath, [WSBLK, 'serve', '--listen', `127.0.0.1:${port}`, '--export', 'd0=memory:16M', '--export', 'd1=memory:16M', '--token-file', tokens]);
  t.after(() => { s.child.kill('SIGKILL'); });
  await waitForPort(port);
  const run = join(dir, 'run');
  const env = { WSBLK_RUN_DIR: run, WSBLK_TOKEN: '' };
  t.after(() => wsblk(['disconnect', '--all'], env));
  // One export per device: each is its export's one writer.
  for (const [i, url] of [`ws://:${token}@127.0.0.1:${port}/d0`, `ws://${token}@127.0.0.1:${port}/d1`].entries()) {
    const c = await wsblk(['connect', url, '--nbd', join(dir, `s${i}.sock`)], env);
    assert.equal(c.code, 0, c.stderr);
    assert.ok(!(c.stdout + c.stderr).includes(token), 'not in the output of connect');
  }
  const l = await wsblk(['list'], env);
  const lj = await wsblk(['list', '--json'], env);
  const rows = JSON.parse(lj.stdout) as Array<{ id: string; pid: number; url: string; state: string }>;
  assert.equal(rows.length, 2);
  for (const [i, row] of rows.entries()) {
    assert.equal(row.state, 'connected');
    assert.equal(row.url, `ws://127.0.0.1:${port}/d${i}`, 'the URL without its credentials');
    const where: Array<[string, string]> = [
      ['argv', readFileSync(`/proc/${row.pid}/cmdline`, 'utf8')],
      ['state file', readFileSync(join(run, `${row.id}.json`), 'utf8')],
      ['log', readFileSync(join(run, `${row.id}.log`), 'utf8')],
      ['list', l.stdout], ['list --json', lj.stdout],
    ];
    for (const [what, text] of where) assert.ok(!text.includes(token), `the token is in the ${what} of ${row.id}`);
  }
  // A token file as well as a token in the URL is a usage error.
  const both = await wsblk(['connect', `ws://:${token}@127.0.0.1:${port}/d0`, '--token-file', tokens, '--nbd', join(dir, 'x.sock')], env);
  assert.equal(both.code, 2, both.stderr);
  assert.ok(!both.stderr.includes(token));
});

test('a connect that keeps failing says so on stderr every few seconds while it waits, then gives up with exit 3', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const r = await wsblk(['connect', `ws://127.0.0.1:${port}/d0`, '--nbd', join(dir, 's.sock'), '--connect-timeout', '8'], { WSBLK_RUN_DIR: join(dir, 'run') });
  assert.equal(r.code, 3, r.stderr);
  const lines = r.stderr.trim().split('\n');
  const waiting = lines.filter((l) => /^wsblk: cannot connect to ws:\/\/127\.0\.0\.1:\d+\/d0: connection refused \(is the server running\?\); retrying, \d+ s of 8$/.test(l));
  assert.ok(waiting.length >= 1 && waiting.length <= 3, `one line every few seconds: ${r.stderr}`);
  assert.equal(lines.length, waiting.length + 1, r.stderr);
  assert.match(lines.at(-1)!, /gave up after 8 s/);
});
