// The fault control surface: the admin API's answers (400 with one line for a bad body, 401
// without its token, 404, 405), `wsblk fault` list/set/clear/crash, `serve --faults FILE`, the
// refusal of a token-less admin listener off loopback, and the membership record passing
// through every fault.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Errno, Op } from '@wsblk/shared';
import { FaultTable, MemoryBackend, faultFilter } from '@wsblk/server';
import { RemoteDisk } from '@wsblk/client';
import { callAdmin, serveWithFaults } from '../support/fault-admin.js';
import { WSBLK, freePort, startProc, tempDir, wsblk } from '../support/procs.js';
import { serve } from '../support/serve-process.js';
import { TEST_CTX, io, pattern } from '../support/server.js';

test('a bad request is answered with its status and a one-line reason', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:1M']);
  const cases: Array<[string, string, unknown, number, RegExp]> = [
    ['POST', '/faults', '{"kind":', 400, /^the body is not JSON: /],
    ['POST', '/faults', undefined, 400, /needs a JSON body/],
    ['POST', '/faults', [1], 400, /^a fault is a JSON object/],
    ['POST', '/faults', { kind: 'smoke' }, 400, /^kind must be one of delay, error, .* \(got "smoke"\)$/],
    ['POST', '/faults', { kind: 'delay' }, 400, /^delay needs ms/],
    ['POST', '/faults', { kind: 'delay', ms: -1 }, 400, /^ms must be a number from 0/],
    ['POST', '/faults', { kind: 'delay', ms: 5, rate: 3 }, 400, /^delay takes no 'rate'/],
    ['POST', '/faults', { kind: 'error', export: 'nope' }, 400, /^no export 'nope' \(exports: disk0\)$/],
    ['POST', '/faults', { kind: 'error', errno: 'EFOO' }, 400, /^errno must be one of EIO, ENOSPC/],
    ['POST', '/faults', { kind: 'error', probability: 2 }, 400, /^probability must be a number from 0 to 1$/],
    ['POST', '/faults', { kind: 'bad-range', offset: 0 }, 400, /^bad-range needs offset and length/],
    ['POST', '/faults', { kind: 'crash', export: 'disk0', client: 'x' }, 400, /^crash applies to an export's data/],
    ['POST', '/faults', { kind: 'drop', direction: 'sideways' }, 400, /^direction must be 'replies' or 'requests'$/],
    ['DELETE', '/faults/nope', undefined, 404, /^no fault 'nope'$/],
    ['POST', '/faults/nope/crash', undefined, 404, /^no fault 'nope'$/],
    ['GET', '/nothing', undefined, 404, /^no such path \/nothing$/],
    ['PUT', '/faults', undefined, 405, /^PUT is not allowed on \/faults$/],
  ];
  for (const [method, path, body, status, reason] of cases) {
    const r = await s.api(method, path, body);
    assert.equal(r.status, status, `${method} ${path} ${JSON.stringify(body)}: ${r.text}`);
    assert.match(r.json.error, reason);
    assert.equal(r.text.trimEnd().split('\n').length, 1, 'one line');
  }
  await s.set({ name: 'e', kind: 'error' });
  const r = await s.api('POST', '/faults', { name: 'e', kind: 'latency', ms: 5 });
  assert.equal(r.status, 400);
  assert.match(r.json.error, /^fault 'e' exists as a error: clear it first$/);
  assert.equal((await s.api('POST', '/faults/e/crash')).json.error, "fault 'e' is a error, not a crash");
  assert.deepEqual((await s.api('GET', '/faults')).json.map((f: { name: string }) => f.name), ['e'], 'nothing bad was set');
});

test('wsblk fault: set, list, clear and crash, as text and --json; a refused set is one line on stderr', async (t) => {
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:1M']);
  const set = await wsblk(['fault', s.admin, 'set', 'delay', 'name=d1', 'export=disk0', 'ms=50', 'jitter=5', 'ops=read,write']);
  assert.equal(set.code, 0, set.stderr);
  assert.equal(set.stdout, 'set d1  delay  export=disk0 ops=read,write ms=50 jitter=5  hits=0\n');
  const br = await wsblk(['fault', s.admin.replace('http://', ''), 'set', 'bad-range', 'name=bad', 'offset=64K', 'length=4K', 'errno=ENOSPC', '--json']);
  assert.equal(br.code, 0, br.stderr);
  assert.deepEqual(JSON.parse(br.stdout), { name: 'bad', kind: 'bad-range', probability: 1, errno: 'ENOSPC', offset: 65536, length: 4096 });
  const list = await wsblk(['fault', s.admin, 'list', '--json']);
  assert.deepEqual(JSON.parse(list.stdout).map((f: { name: string; hits: number }) => [f.name, f.hits]), [['d1', 0], ['bad', 0]]);
  const text = await wsblk(['fault', s.admin, 'list']);
  assert.match(text.stdout, /^d1  delay  export=disk0 ops=read,write ms=50 jitter=5  hits=0\nbad  bad-range  errno=ENOSPC offset=65536 length=4096  hits=0\n$/);
  const refused = await wsblk(['fault', s.admin, 'set', 'latency']);
  assert.equal(refused.code, 1);
  assert.equal(refused.stderr, 'wsblk: POST /faults: 400 latency needs ms (milliseconds)\n');
  assert.equal((await wsblk(['fault', s.admin, 'set', 'crash', 'name=pwr', 'export=disk0'])).code, 0);
  const crash = await wsblk(['fault', s.admin, 'crash', 'pwr']);
  assert.equal(crash.stdout, 'crashed: 0 unflushed writes lost (0 bytes)\n');
  assert.equal((await wsblk(['fault', s.admin, 'clear', 'd1'])).stdout, 'cleared 1 fault\n');
  assert.equal((await wsblk(['fault', s.admin, 'clear'])).stdout, 'cleared 2 faults\n');
  assert.equal((await wsblk(['fault', s.admin, 'list'])).stdout, 'no faults\n');
  const usage = await wsblk(['fault', s.admin, 'explode']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /unknown action 'explode'/);
  const help = await wsblk(['fault', '--help']);
  for (const word of ['delay', 'error', 'bad-range', 'pause', 'crash', 'latency', 'bandwidth', 'blackhole', 'reset', 'drop', 'DELETE /faults/NAME']) {
    assert.ok(help.stdout.includes(word), `--help names ${word}`);
  }
  const unreachable = await wsblk(['fault', `http://127.0.0.1:${await freePort()}`, 'list']);
  assert.equal(unreachable.code, 3);
  assert.match(unreachable.stderr, /^wsblk: cannot reach the admin API at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED\n$/);
  assert.match(s.proc.output(), /fault set by 127\.0\.0\.1:\d+ \(wsblk fault, [^)]+\): d1 delay/);
});

test('an admin token: every request needs it; off loopback the listener refuses to start without one', async (t) => {
  const dir = tempDir(t);
  const tokenFile = join(dir, 'admin-token');
  writeFileSync(tokenFile, 'sesame-admin-0123\n');
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:1M', '--admin-token-file', tokenFile]);
  const anon = await s.api('GET', '/faults');
  assert.equal(anon.status, 401);
  assert.match(anon.json.error, /^admin token missing or wrong/);
  assert.equal((await s.api('GET', '/faults', undefined, 'wrong')).status, 401);
  assert.equal((await callAdmin(s.admin, 'GET', '/faults', undefined, 'sesame-admin-0123')).status, 200);
  assert.equal((await wsblk(['fault', s.admin, 'list'])).code, 3, 'the CLI without the token');
  assert.equal((await wsblk(['fault', s.admin, 'list', '--token-file', tokenFile])).stdout, 'no faults\n');
  assert.equal((await wsblk(['fault', s.admin, 'list'], { WSBLK_ADMIN_TOKEN: 'sesame-admin-0123' })).stdout, 'no faults\n');

  const open = startProc(process.execPath, [WSBLK, 'serve', '--listen', `127.0.0.1:${await freePort()}`,
    '--export', 'disk0=memory:1M', '--admin-listen', `0.0.0.0:${await freePort()}`]);
  assert.equal(await open.exited, 2);
  assert.match(open.output(), /wsblk: --admin-listen 0\.0\.0\.0 is not loopback: give --admin-token-file too/);
});

test('serve --faults FILE (YAML) starts with the faults set; a bad file is refused naming the fault', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'faults.yaml');
  writeFileSync(file, 'faults:\n  - name: full\n    kind: error\n    errno: ENOSPC\n    ops: [write]\n  - {kind: delay, ms: 1, ops: [flush]}\n');
  const s = await serveWithFaults(t, ['--export', 'disk0=memory:1M', '--faults', file]);
  const d = await RemoteDisk.connect({ url: s.url('disk0'), connectTimeoutMs: 5000 });
  t.after(() => d.close());
  assert.equal((await io(d, { op: Op.Write, offset: 0, length: 4096, payload: pattern(4096, 1) })).status, Errno.ENOSPC);
  assert.deepEqual((await s.api('GET', '/faults')).json.map((f: { name: string }) => f.name), ['full', 'delay-1']);
  assert.match(s.proc.output(), new RegExp(`fault set by --faults ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: full error`));

  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify([{ kind: 'delay', ms: 1 }, { kind: 'pause', ms: 3 }]));
  const refused = await wsblk(['serve', '--listen', `127.0.0.1:${await freePort()}`, '--export', 'disk0=memory:1M', '--faults', bad]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /^wsblk: --faults .*bad\.json: fault 2: pause takes no 'ms'/m);
  const plain = await serve(t, ['--export', 'disk0=memory:1M']);
  assert.doesNotMatch(plain.proc.output(), /admin listening/, 'no admin listener unless asked');
});

test('the membership record (readMeta/writeMeta) passes through every fault', async () => {
  const table = new FaultTable();
  const backend = faultFilter(new MemoryBackend(1 << 20), table.addExport('disk0'));
  await table.set({ name: 'p', kind: 'pause' }, 'test');
  await table.set({ name: 'e', kind: 'error' }, 'test');
  await table.set({ name: 'd', kind: 'delay', ms: 60_000 }, 'test');
  await table.set({ name: 'c', kind: 'crash', export: 'disk0' }, 'test');
  const record = Buffer.from('a membership record');
  await backend.writeMeta(record);
  table.crash('c', 'test');
  assert.deepEqual(await backend.readMeta(), record);
  let settled = false;
  const held = backend.read(TEST_CTX, 0, 512);
  held.then(() => { settled = true; }, () => { settled = true; });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(settled, false, 'a read is held by the pause meanwhile');
  table.clear('p', 'test');
  table.clear('d', 'test');
  await assert.rejects(held, /fault e: read failed \(EIO\)/);
  table.clear(undefined, 'test');
});
