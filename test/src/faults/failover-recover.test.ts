// A device with failover gateways whose daemon is SIGKILLed: the state file keeps the gateways
// and the one its session lives on; a new daemon run from that state (what `wsblk recover` does;
// recover itself is ublk-only, see support/recover-nbd.ts) resumes the session on that gateway
// and can still fail over along the list. The gateways are `wsblk serve` processes over one file,
// with no fence between them (RBD's lock is that fence for real gateways): only one is up when
// the device writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireTool, startProc, stopProc } from '../support/procs.js';
import { fioPattern, startSetDaemon } from '../support/replica-procs.js';
import { failoverArgs, listDevice, sameFileGateways, waitGateway } from '../support/gateway-procs.js';

const RECOVER_NBD = fileURLToPath(new URL('../support/recover-nbd.js', import.meta.url));

test('a daemon killed after a failover: its state keeps the gateways, and the new daemon resumes on gateway 2, then fails over back to 1', { timeout: 90_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const g = await sameFileGateways(t, 2);
  const d = await startSetDaemon(t, g.dir, [g.urls[0]!], failoverArgs(g.urls));
  const w = await fioPattern(d.uri, '8M', '0x0badf00d');
  assert.equal(w.errors, 0, w.raw.slice(-2000));
  await g.servers[0]!.kill();
  const on2 = await waitGateway(d, g.urls[1]!, 'the device is on gateway 2');
  d.proc.child.kill('SIGKILL');
  await d.proc.exited;
  const dead = await listDevice(d);
  assert.equal(dead.state, 'dead');
  assert.equal(dead.gateway, g.urls[1], 'list shows where the dead daemon\'s session lives');
  assert.deepEqual(dead.failover, [g.urls[1]]);
  const state = JSON.parse(readFileSync(join(d.runDir, `${on2.id}.json`), 'utf8')) as { target: { url: string; failover: string[]; gateway: string; sessionId: string } };
  assert.deepEqual(state.target.failover, [g.urls[1]]);
  assert.equal(state.target.gateway, g.urls[1]);
  assert.equal(state.target.sessionId, on2.sessionId);
  // Gateway 1 is back before the recovery: the session lives on gateway 2, which is tried first.
  await g.servers[0]!.restart();
  const r = startProc(process.execPath, [RECOVER_NBD, on2.id, join(g.dir, 'again.sock')], { WSBLK_RUN_DIR: d.runDir });
  t.after(() => stopProc(r, 5000));
  const again = { runDir: d.runDir, proc: r };
  const v = await waitGateway(again, g.urls[1]!, 'the new daemon is on gateway 2');
  assert.equal(v.sessionId, on2.sessionId, 'it resumed the dead daemon\'s session (fencing its connection)');
  assert.match(g.servers[1]!.proc.output(), new RegExp(`resumed session ${on2.sessionId!.slice(0, 8)}`));
  // The new daemon has the list too: gateway 2 killed, it moves to gateway 1.
  await g.servers[1]!.kill();
  await waitGateway(again, g.urls[0]!, 'the new daemon fails over to gateway 1');
  const uri = `nbd+unix:///?socket=${join(g.dir, 'again.sock')}`;
  const check = await fioPattern(uri, '8M', '0x0badf00d', true);
  assert.equal(check.errors, 0, `the data reads back through gateway 1:\n${check.raw.slice(-1500)}\n${r.output().slice(-2000)}`);
});
