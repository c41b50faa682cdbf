// The client's side of one writer per export and of session secrets, against a scripted server
// (the `ws` package speaking just enough wsblk): what every hello carries (secret, host,
// readOnly, steal on the first connect only), and what the client does when the server refuses
// it with WriterBusy or BadSecret: a connect exits 3 naming the holder, a reconnect stops the device.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  CloseCode, Errno, Op, SUBPROTOCOL, decodeMessage, encodeReplies, encodeWelcome, type Hello, type Welcome,
} from '@wsblk/shared';
import { RemoteDisk, type RemoteDiskOptions } from '@wsblk/client';
import { tempDir, wsblk } from '../support/procs.js';
import { io, waitFor } from '../support/server.js';

const MiB = 1 << 20;

/** What the scripted server does with the nth hello (0-based): welcome it, or close with a code and reason. */
type Script = (hello: Hello, n: number) => { welcome: true } | { close: number; reason: string };

interface Scripted {
  port: number;
  url: (name?: string) => string;
  hellos: Hello[];
  /** The sockets of welcomed connections, newest last. */
  conns: WebSocket[];
  close(): Promise<void>;
}

function welcomeFor(hello: Hello, n: number): Welcome {
  return {
    version: 1, exportName: 'd0', size: 64 * MiB, blockSize: 512, readOnly: hello.readOnly === true, flush: false,
    fua: false, discard: false, writeZeroes: false, maxPayload: 4 * MiB, sessionId: hello.resume ?? `s-${n}`,
    epoch: n + 1, resumed: hello.resume !== undefined, nextSeq: 1, features: [],
  };
}

/** A server that answers hellos as the script says, and every request with status 0. */
async function scriptedServer(script: Script): Promise<Scripted> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (p) => (p.has(SUBPROTOCOL) ? SUBPROTOCOL : false) });
  await once(wss, 'listening');
  const port = (wss.address() as AddressInfo).port;
  const hellos: Hello[] = [];
  const conns: WebSocket[] = [];
  wss.on('connection', (ws) => {
    let welcomed = false;
    ws.on('message', (data: Buffer) => {
      const msg = decodeMessage(Buffer.from(data));
      if (msg.kind === 'hello') {
        const n = hellos.push(msg.hello) - 1;
        const what = script(msg.hello, n);
        if ('close' in what) return ws.close(what.close, what.reason);
        welcomed = true;
        conns.push(ws);
        ws.send(encodeWelcome(welcomeFor(msg.hello, n)));
      } else if (msg.kind === 'requests' && welcomed) {
        const replies = msg.requests.map((r) => ({ seq: r.seq, status: 0, ...(r.op === Op.Read ? { data: Buffer.alloc(r.length) } : {}) }));
        ws.send(Buffer.concat(encodeReplies(replies, false)));
      }
    });
  });
  return {
    port, hellos, conns,
    url: (name = 'd0') => `ws://127.0.0.1:${port}/${name}`,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
}

const quick = { connectTimeoutMs: 5000, backoffInitialMs: 20, backoffMaxMs: 200 };
const SECRET = 'ab'.repeat(32);

test('every hello carries the secret and the host; steal goes on the first connect only, never on a reconnect', async () => {
  const s = await scriptedServer(() => ({ welcome: true }));
  // Built as a variable: the options are checked against RemoteDiskOptions without excess-property errors on older builds.
  const opts = { url: s.url(), secret: SECRET, steal: true, ...quick };
  const disk = await RemoteDisk.connect(opts as RemoteDiskOptions);
  try {
    assert.equal(s.hellos.length, 1);
    assert.equal(s.hellos[0]!.secret, SECRET);
    assert.equal(s.hellos[0]!.steal, true);
    assert.equal(typeof s.hellos[0]!.host, 'string');
    assert.ok(s.hellos[0]!.host!.length > 0);
    s.conns[0]!.terminate();
    await waitFor(() => s.hellos.length === 2 && disk.stats.connected, 5000, 'reconnect');
    const resume = s.hellos[1]!;
    assert.equal(resume.resume, 's-0');
    assert.equal(resume.secret, SECRET, 'the resume proves the session with the same secret');
    assert.equal(resume.steal, undefined, 'a reconnect never steals');
  } finally {
    await disk.close();
    await s.close();
  }
});

for (const [code, name] of [[CloseCode.WriterBusy, 'WriterBusy'], [CloseCode.BadSecret, 'BadSecret']] as const) {
  test(`a reconnect refused with ${name} stops the disk: outstanding I/O fails with EIO, no more tries`, async () => {
    const s = await scriptedServer((_h, n) => (n === 0 ? { welcome: true } : { close: code, reason: `refused: ${name} (client x on host y)` }));
    const disk = await RemoteDisk.connect({ url: s.url(), ...quick });
    try {
      const fenced = once(disk, 'fenced');
      s.conns[0]!.terminate();
      // Submitted while the connection is down: held for the replay, then failed when refused.
      const pending = io(disk, { op: Op.Write, offset: 0, length: 4096, payload: Buffer.alloc(4096, 1) });
      const [why] = await fenced as [string];
      assert.match(String(why), /client x on host y/);
      assert.equal((await pending).status, Errno.EIO);
      const tries = s.hellos.length;
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(s.hellos.length, tries, 'no reconnect after a final refusal');
      assert.equal((await io(disk, { op: Op.Read, offset: 0, length: 4096 })).status, Errno.EIO, 'new requests fail at once');
    } finally {
      await disk.close();
      await s.close();
    }
  });
}

test('readOnly: the hello asks for it, the disk says it is read-only, and a write fails with EPERM without reaching the server', async () => {
  const s = await scriptedServer(() => ({ welcome: true }));
  const opts = { url: s.url(), readOnly: true, ...quick };
  const disk = await RemoteDisk.connect(opts as RemoteDiskOptions);
  try {
    assert.equal(s.hellos[0]!.readOnly, true);
    assert.equal(disk.info.readOnly, true);
    assert.equal((await io(disk, { op: Op.Write, offset: 0, length: 4096, payload: Buffer.alloc(4096, 1) })).status, Errno.EPERM);
    assert.equal((await io(disk, { op: Op.Read, offset: 0, length: 4096 })).status, 0);
    assert.equal(disk.stats.requestsSent, 1, 'only the read went out');
  } finally {
    await disk.close();
    await s.close();
  }
});

test('connect refused because the export has a writer: exit 3, one line naming the holder and suggesting --steal, nothing left behind', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const s = await scriptedServer(() => ({ close: CloseCode.WriterBusy, reason: "export 'd0' has a writer: client web1:4242 on host web1" }));
  t.after(() => s.close());
  const env = { WSBLK_RUN_DIR: join(dir, 'run') };
  const r = await wsblk(['connect', s.url(), '--nbd', join(dir, 'x.sock'), '--connect-timeout', '5'], env);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /^wsblk: .*client web1:4242 on host web1.*--steal/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.equal(s.hellos.length, 1, 'a refusal by the server is final: no retry');
  assert.deepEqual(readdirSync(join(dir, 'run')).filter((f) => !f.endsWith('.log')), [], 'no state left behind');
});

test('connect --steal asks to take over on its first hello; --read-only asks for a read-only attach; both with --steal is a usage error', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const s = await scriptedServer(() => ({ welcome: true }));
  t.after(() => s.close());
  const env = { WSBLK_RUN_DIR: join(dir, 'run') };
  t.after(() => wsblk(['disconnect', '--all'], env));
  const a = await wsblk(['connect', s.url(), '--nbd', join(dir, 'a.sock'), '--steal'], env);
  assert.equal(a.code, 0, a.stderr);
  const b = await wsblk(['connect', s.url(), '--nbd', join(dir, 'b.sock'), '--read-only'], env);
  assert.equal(b.code, 0, b.stderr);
  assert.deepEqual(s.hellos.map((h) => [h.steal ?? false, h.readOnly ?? false]), [[true, false], [false, true]]);
  const rows = JSON.parse((await wsblk(['list', '--json'], env)).stdout) as Array<{ id: string; readOnly: boolean }>;
  assert.deepEqual(rows.map((r) => [r.id, r.readOnly]), [['nbd0', false], ['nbd1', true]], 'the --read-only device is read-only');
  const both = await wsblk(['connect', s.url(), '--nbd', join(dir, 'c.sock'), '--steal', '--read-only'], env);
  assert.equal(both.code, 2, both.stderr);
  assert.equal(s.hellos.length, 2);
});

test('the session secret: made at connect, in the 0600 state file and every hello, never in list, list --json, argv or the log', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const s = await scriptedServer(() => ({ welcome: true }));
  t.after(() => s.close());
  const run = join(dir, 'run');
  const env = { WSBLK_RUN_DIR: run };
  t.after(() => wsblk(['disconnect', '--all'], env));
  const c = await wsblk(['connect', s.url(), '--nbd', join(dir, 'a.sock')], env);
  assert.equal(c.code, 0, c.stderr);
  const stateFile = join(run, 'nbd0.json');
  assert.equal(statSync(stateFile).mode & 0o777, 0o600);
  const state = JSON.parse(readFileSync(stateFile, 'utf8')) as { pid: number; target?: { secret?: string; url?: string; sessionId?: string } };
  const secret = state.target?.secret ?? '';
  assert.match(secret, /^[0-9a-f]{64}$/, 'a 32-byte hex secret in the state file');
  assert.equal(s.hellos[0]!.secret, secret, 'the hello carries the secret the state file keeps');
  assert.equal(state.target?.sessionId, 's-0');
  const l = await wsblk(['list'], env);
  const lj = await wsblk(['list', '--json'], env);
  assert.equal(lj.code, 0, lj.stderr);
  const cmdline = readFileSync(`/proc/${state.pid}/cmdline`, 'utf8');
  const log = readFileSync(join(run, 'nbd0.log'), 'utf8');
  for (const [where, text] of [['connect', c.stdout + c.stderr], ['list', l.stdout], ['list --json', lj.stdout], ['argv', cmdline], ['log', log]]) {
    assert.ok(!text!.includes(secret), `the secret is in ${where}`);
  }
  // A second connect makes a secret of its own.
  const d = await wsblk(['connect', s.url(), '--nbd', join(dir, 'b.sock')], env);
  assert.equal(d.code, 0, d.stderr);
  assert.match(s.hellos[1]!.secret ?? '', /^[0-9a-f]{64}$/);
  assert.notEqual(s.hellos[1]!.secret, secret);
});
