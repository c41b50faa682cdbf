// Faults on the whole path (fio -> NBD export -> WebSocket -> server -> file), with real
// processes: the server is SIGKILLed and restarted, the client's TCP connection is cut.
// The bar: fio reports no I/O error and every block verifies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  CutProxy, fio, freePort, readIf, requireTool, sleep, startServer, tempDir, wsblk,
} from '../support/procs.js';
import { startNbdDaemon } from '../support/nbd-daemon.js';

const startDaemon = startNbdDaemon;

const fioVerifyArgs = (uri: string, size: string) => [
  '--name=verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=32',
  `--size=${size}`, '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', '--random_generator=tausworthe64',
  // Throttle the write phase so that the faults land inside it; the verify phase runs free.
  '--rate=,16m',
];

async function daemonStats(runDir: string): Promise<Record<string, number>> {
  const r = await wsblk(['list', '--json'], { WSBLK_RUN_DIR: runDir });
  assert.equal(r.code, 0, r.stderr);
  const list = JSON.parse(r.stdout) as Array<Record<string, number>>;
  assert.equal(list.length, 1);
  return list[0]!;
}

test('fio verify passes while the server is SIGKILLed and restarted twice (file backend)', { timeout: 240_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const dir = tempDir(t);
  const port = await freePort();
  const spec = [`d0=file:${join(dir, 'd0.img')},size=256M`];
  let server = await startServer(t, port, spec);
  const { uri } = await startDaemon(t, `ws://127.0.0.1:${port}/d0`, join(dir, 'd0.sock'), join(dir, 'run'));
  const run = fio(fioVerifyArgs(uri, '96M'));
  for (const at of [1500, 2000]) {
    await sleep(at);
    server.child.kill('SIGKILL');
    await server.exited;
    await sleep(300);
    server = await startServer(t, port, spec);
  }
  const r = await run;
  assert.equal(r.code, 0, `fio failed:\n${r.raw.slice(-3000)}\nserver:\n${server.output()}`);
  assert.equal(r.errors, 0, 'fio counted I/O errors');
  const job = r.json.jobs[0];
  assert.equal(job.write.io_bytes, 96 << 20, 'every block was written');
  assert.equal(job.read.io_bytes, 96 << 20, 'every block was read back and verified');
  const stats = await daemonStats(join(dir, 'run'));
  assert.ok(stats.reconnects! >= 2, `the client reconnected after each kill (reconnects=${stats.reconnects})`);
  assert.ok(stats.replayed! >= 1, `requests in flight were replayed (replayed=${stats.replayed})`);
  t.diagnostic(`write ${Math.round(job.write.iops)} IOPS, verify read ${Math.round(job.read.iops)} IOPS, reconnects ${stats.reconnects}, replayed ${stats.replayed}`);
  void readIf;
});

test('fio verify passes when the client\'s TCP connection is cut twice mid-run', { timeout: 240_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const dir = tempDir(t);
  const port = await freePort();
  await startServer(t, port, [`d0=file:${join(dir, 'd0.img')},size=256M`]);
  const proxy = new CutProxy(port);
  const proxyPort = await proxy.listen();
  t.after(() => proxy.close());
  const { uri } = await startDaemon(t, `ws://127.0.0.1:${proxyPort}/d0`, join(dir, 'd0.sock'), join(dir, 'run'));
  const run = fio(fioVerifyArgs(uri, '96M'));
  let cut = 0;
  for (const at of [1500, 2000]) {
    await sleep(at);
    cut += proxy.cut();
  }
  const r = await run;
  assert.equal(r.code, 0, `fio failed:\n${r.raw.slice(-3000)}`);
  assert.equal(r.errors, 0, 'fio counted I/O errors');
  assert.equal(r.json.jobs[0].read.io_bytes, 96 << 20, 'every block was read back and verified');
  assert.ok(cut >= 2, `the proxy cut live connections (${cut})`);
  const stats = await daemonStats(join(dir, 'run'));
  assert.ok(stats.reconnects! >= 2, `the client reconnected after each cut (reconnects=${stats.reconnects})`);
});
