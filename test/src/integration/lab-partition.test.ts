// The lab's real partition: nftables drops on loopback for one port, both ways. A TCP connection
// through the cut stays open and silent, and carries on once healed; the run's table goes at close.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createConnection, createServer, type Socket } from 'node:net';
import { NftPartitions } from '../../../client/dist/lab/partition.js';
import { requireTool, sleep } from '../support/procs.js';

const tableExists = (table: string): Promise<boolean> =>
  new Promise((resolve) => execFile('nft', ['list', 'table', 'inet', table], (err) => resolve(!err)));

test('nftables partition on 127.0.0.1: an open connection goes silent while cut, carries on when healed; close removes the table', { timeout: 60_000 }, async (t) => {
  if (!(await requireTool(t, 'nft'))) return;
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') throw new Error('the lab partition test needs root (CAP_NET_ADMIN) under CI');
    return t.skip('needs root (CAP_NET_ADMIN)');
  }
  const server = createServer((s) => s.pipe(s)); // echo
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const port = (server.address() as { port: number }).port;
  const sock: Socket = createConnection(port, '127.0.0.1');
  t.after(() => sock.destroy());
  await new Promise((r) => sock.once('connect', r));
  let got = '';
  sock.setEncoding('utf8').on('data', (d: string) => { got += d; });
  const echoed = async (text: string, ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (got.includes(text)) return true;
      await sleep(20);
    }
    return got.includes(text);
  };

  sock.write('one');
  assert.ok(await echoed('one', 2000), 'echo before the cut');

  const nft = await NftPartitions.open();
  assert.ok(nft, 'nftables usable as root');
  t.after(() => nft.close());
  assert.ok(await tableExists(nft.table));
  await nft.cut(port);
  sock.write('two');
  assert.equal(await echoed('two', 1500), false, 'nothing crosses the cut');
  assert.equal(sock.destroyed, false, 'the connection stays open');
  await nft.heal(port);
  assert.ok(await echoed('two', 15_000), 'TCP retransmits once healed');

  await nft.close();
  assert.equal(await tableExists(nft.table), false, 'the run\'s table is gone');
});
