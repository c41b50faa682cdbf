// Issue 12, bounded memory: a peer that never ends a fragmented message. The protocol never
// fragments, yet a server that keeps every fragment (empty ones cost nothing on the wire) grows
// without bound. Real server process, a raw peer after the hello, a healthy client beside it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../support/procs.js';
import {
  MiB, OPCODE, RawPeer, arena, assertHealthy, flood, repeated, wsFrame,
} from '../support/hostile.js';

const BOUND = 128 * MiB;

test('a peer that streams endless fragments of one message is closed or cannot grow the server past 128 MiB, while a healthy client verifies its I/O', { timeout: 120_000 }, async (t) => {
  // Empty fragments (6 bytes each on the wire), then 1-byte ones; each on a fresh server.
  for (const [name, payload] of [['empty', Buffer.alloc(0)], ['1-byte', Buffer.from([0x5a])]] as const) {
    await t.test(`${name} fragments`, async (t) => {
      const a = await arena(t, BOUND);
      const { target, watch } = a;
      const peer = await RawPeer.greeted(t, target.port);
      peer.socket.write(wsFrame(OPCODE.binary, Buffer.alloc(8), { fin: false }));
      const fragment = wsFrame(OPCODE.continuation, payload, { fin: false });
      const r = await flood(peer.socket, repeated(fragment), { bytes: 512 * MiB, ms: 8000, stop: () => watch.over });
      await sleep(300);
      watch.stop();
      t.diagnostic(`${Math.round(r.bytes / fragment.length)} fragments sent in ${r.ms} ms, ended: ${r.ended}`
        + `${peer.closeCode ? `, server closed with ${peer.closeCode}` : ''}; ${watch.describe()}`);
      peer.destroy();
      assert.ok(watch.growth < BOUND, `server memory grew past the bound: ${watch.describe()}`);
      await assertHealthy(t, a);
    });
  }
});
