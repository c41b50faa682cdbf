// Issue 12, bounded memory on the client's side: a hostile server (a raw TCP server that does
// the upgrade and the welcome by hand) floods a `wsblk connect --nbd` daemon. Whatever the
// server sends or fails to read, the daemon's memory stays bounded.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { sleep } from '../support/procs.js';
import {
  HostileServer, MiB, OPCODE, RssWatch, alive, flood, repeated, startDaemon, wsFrame, type FloodResult,
} from '../support/hostile.js';

const BOUND = 128 * MiB;

/** What the hostile server does once the daemon has its welcome. */
type Flood = (socket: Socket, watch: () => RssWatch) => Promise<FloodResult>;

const floods: Array<[string, Flood]> = [
  // Pings with 125-byte payloads; the pongs are never read.
  ['pings nobody reads', (socket, watch) => {
    socket.pause();
    return flood(socket, repeated(wsFrame(OPCODE.ping, Buffer.alloc(125, 0x70), { masked: false })), { bytes: 1024 * MiB, ms: 8000, stop: () => watch().over });
  }],
  // A frame that claims 64 MiB (the client's largest message), all but its last byte sent, then a stall.
  ['an endless half-frame', async (socket, watch) => {
    const claimed = 64 * MiB;
    socket.write(wsFrame(OPCODE.binary, Buffer.alloc(0), { masked: false, claimed }));
    const r = await flood(socket, Buffer.alloc(MiB, 0x33), { bytes: claimed - MiB, ms: 8000, stop: () => watch().over });
    if (!socket.destroyed) socket.write(Buffer.alloc(MiB - 1, 0x33));
    await sleep(2000);
    return r;
  }],
  // A message that never ends: one fragment, then empty continuations (2 bytes each on the wire).
  ['endless empty fragments', (socket, watch) => {
    socket.write(wsFrame(OPCODE.binary, Buffer.alloc(8), { fin: false, masked: false }));
    return flood(socket, repeated(wsFrame(OPCODE.continuation, Buffer.alloc(0), { fin: false, masked: false })), { bytes: 512 * MiB, ms: 8000, stop: () => watch().over });
  }],
];

test('a hostile server that floods the client with pings, an endless half-frame or endless fragments cannot grow the daemon past 128 MiB', { timeout: 120_000 }, async (t) => {
  for (const [name, attack] of floods) {
    await t.test(name, async (t: TestContext) => {
      let watch: RssWatch | undefined;
      let started!: () => void;
      const attacking = new Promise<void>((r) => { started = r; });
      let result: Promise<FloodResult> | undefined;
      const server = await HostileServer.start(t, (socket) => {
        // Waits for the daemon's baseline before the attack.
        result = attacking.then(() => attack(socket, () => watch!));
      });
      const dir = mkdtempSync(join(tmpdir(), 'wsblk-hostile-'));
      const daemon = await startDaemon(t, server.url, dir);
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      await sleep(500);
      watch = new RssWatch(daemon, { bound: BOUND });
      t.after(() => watch!.stop());
      started();
      const r = await result!;
      await sleep(300);
      watch.stop();
      t.diagnostic(`${Math.round(r.bytes / MiB)} MiB sent in ${r.ms} ms, ended: ${r.ended}; daemon ${watch.describe()}`);
      assert.ok(alive(daemon), `the daemon died:\n${daemon.output().slice(-2000)}`);
      assert.ok(watch.growth < BOUND, `daemon memory grew past the bound: ${watch.describe()}`);
    });
  }
});
