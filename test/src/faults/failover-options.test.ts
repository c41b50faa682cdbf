// connect --failover on the command line: what it refuses (exit 2, one line), its help, and a
// token in the gateways' URLs, used on every gateway and kept out of argv, state, log and list.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, tempDir, wsblk } from '../support/procs.js';
import { ReplicaServer } from '../support/replica-procs.js';
import { listDevice, waitGateway } from '../support/gateway-procs.js';

test('bad --failover combinations exit 2 with one line, the token in none of them', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const [a, b, c] = await Promise.all([freePort(), freePort(), freePort()]).then((ps) => ps.map((p) => `ws://127.0.0.1:${p}/d`));
  const env = { WSBLK_RUN_DIR: join(dir, 'run'), WSBLK_TOKEN: '' };
  const cases: Array<[string[], RegExp]> = [
    [[`${a},${b}`, '--failover', c!], /--failover names other gateways of one export; a replica set \(URL1,URL2,\.\.\.\) has no failover gateways/],
    [[a!, '--failover', 'not a url'], /--failover: 'not a url' is not a URL/],
    [[a!, '--failover', 'http://h/d'], /--failover: .*scheme must be ws:\/\/ or wss:\/\//],
    [[a!, '--failover', a!.replace('ws://', 'ws://:secret-one@')], /is given twice/],
    [[a!, '--failover', b!, '--failover', b!], /is given twice/],
    [[a!.replace('ws://', 'ws://:secret-one@'), '--failover', b!.replace('ws://', 'ws://:secret-two@')], /the gateways of a device use one token/],
  ];
  for (const [args, why] of cases) {
    const r = await wsblk(['connect', ...args, '--nbd', join(dir, 'x.sock')], env);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, why);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.ok(!/secret-one|secret-two/.test(r.stderr), 'no token in the error');
  }
});

test('connect --help explains --failover', async () => {
  const r = await wsblk(['connect', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /--failover <url>/);
  assert.match(r.stdout.replace(/\s+/g, ' '), /--failover URL2 \(repeatable\) names another gateway of the same data/);
  assert.match(r.stdout.replace(/\s+/g, ' '), /Not a replica set/);
});

test('a token in the gateways\' URLs opens every gateway and is in none of argv, the state file, the log or list', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const token = 'gw-token-51c0ffee';
  const tokens = join(dir, 'tokens');
  writeFileSync(tokens, `${token} d rw\n`);
  const file = join(dir, 'image.raw');
  // Two gateways of one file (no fence between them; gateway 1 is dead before gateway 2 is used).
  const g1 = await ReplicaServer.exporting(t, `d=file:${file},size=16M`, ['--token-file', tokens]);
  const g2 = await ReplicaServer.exporting(t, `d=file:${file},size=16M`, ['--token-file', tokens]);
  const run = join(dir, 'run');
  const env = { WSBLK_RUN_DIR: run, WSBLK_TOKEN: '' };
  t.after(() => wsblk(['disconnect', '--all'], env));
  const withToken = (u: string) => u.replace('ws://', `ws://:${token}@`);
  const c = await wsblk(['connect', withToken(g1.url), '--failover', withToken(g2.url), '--nbd', join(dir, 's.sock')], env);
  assert.equal(c.code, 0, c.stderr);
  await g1.kill();
  const row = await waitGateway({ runDir: run }, g2.url, 'the device is on gateway 2 (its token accepted)');
  assert.deepEqual(row.failover, [g2.url], 'the failover URL without its credentials');
  const state = JSON.parse(readFileSync(join(run, `${row.id}.json`), 'utf8')) as { target: { failover: string[]; gateway: string } };
  assert.deepEqual(state.target.failover, [g2.url], 'the state file keeps the failover list');
  assert.equal(state.target.gateway, g2.url, 'and the gateway the session lives on');
  const pid = (await listDevice({ runDir: run }) as unknown as { pid: number }).pid;
  const where: Array<[string, string]> = [
    ['argv', readFileSync(`/proc/${pid}/cmdline`, 'utf8')],
    ['state file', readFileSync(join(run, `${row.id}.json`), 'utf8')],
    ['log', readFileSync(join(run, `${row.id}.log`), 'utf8')],
    ['list', (await wsblk(['list'], env)).stdout], ['list --json', (await wsblk(['list', '--json'], env)).stdout],
  ];
  for (const [what, text] of where) assert.ok(!text.includes(token), `the token is in the ${what}`);
  assert.match(where[0]![1], new RegExp(`--failover\0${g2.url}`), 'the daemon was given the failover URL');
});
