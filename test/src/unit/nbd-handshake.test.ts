import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdExport, type NbdExportOptions } from '@wsblk/client';
import { MemoryTarget, type MemoryTargetOptions } from '../support/memory-target.js';
import { CMD, INFO, OPT, REP, RawNbdClient, TFLAG, infos, u32 } from './nbd-raw-client.js';

const MiB = 1 << 20;

async function withExport(
  options: Partial<MemoryTargetOptions>,
  fn: (path: string, target: MemoryTarget) => Promise<void>,
  exportOptions: NbdExportOptions = {},
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'nbd-hs-'));
  const path = join(dir, 'nbd.sock');
  const target = new MemoryTarget({ size: 16 * MiB, ...options });
  const exp = new NbdExport(target, exportOptions);
  await exp.listen(path);
  try {
    await fn(path, target);
  } finally {
    await exp.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('greeting offers fixed newstyle and no zeroes', () =>
  withExport({}, async (path) => {
    const c = await RawNbdClient.connect(path);
    assert.equal(await c.readGreeting(), 0b11);
    c.close();
  }));

test('unknown client flags drop the connection', () =>
  withExport({}, async (path) => {
    const c = await RawNbdClient.connect(path);
    await c.readGreeting();
    c.write(u32(0b100));
    assert.equal(await c.closedByServer(), true);
  }));

test('LIST names the export, then ACK', () =>
  withExport({ exportName: 'disk0' }, async (path) => {
    const c = await RawNbdClient.open(path);
    c.sendOption(OPT.list);
    const replies = await c.readOptionReplies();
    assert.equal(replies.length, 2);
    assert.equal(replies[0]!.type, REP.server);
    assert.equal(replies[0]!.option, OPT.list);
    const d = replies[0]!.data;
    assert.equal(d.toString('utf8', 4, 4 + d.readUInt32BE(0)), 'disk0');
    assert.equal(replies[1]!.type, REP.ack);
    c.close();
  }));

test('LIST with data is invalid and negotiation goes on', () =>
  withExport({}, async (path) => {
    const c = await RawNbdClient.open(path);
    c.sendOption(OPT.list, Buffer.from('x'));
    assert.equal((await c.readOptionReply()).type, REP.errInvalid);
    c.sendOption(OPT.abort);
    assert.equal((await c.readOptionReply()).type, REP.ack);
    assert.equal(await c.closedByServer(), true);
  }));

test('INFO reports size, flags, name and block sizes (min 1, preferred block size, max payload)', () =>
  withExport({ exportName: 'disk0', blockSize: 4096, maxPayload: 2 * MiB }, async (path) => {
    const c = await RawNbdClient.open(path);
    const replies = await c.info('', [INFO.name, INFO.blockSize]);
    assert.equal(replies.at(-1)!.type, REP.ack);
    const m = infos(replies);
    const ex = m.get(INFO.export)!;
    assert.equal(Number(ex.readBigUInt64BE(2)), 16 * MiB);
    const flags = ex.readUInt16BE(10);
    assert.equal(flags, TFLAG.hasFlags | TFLAG.flush | TFLAG.fua | TFLAG.trim | TFLAG.writeZeroes);
    const name = m.get(INFO.name)!;
    assert.equal(name.toString('utf8', 2), 'disk0');
    const bs = m.get(INFO.blockSize)!;
    assert.deepEqual([bs.readUInt32BE(2), bs.readUInt32BE(6), bs.readUInt32BE(10)], [1, 4096, 2 * MiB]);
    // INFO leaves negotiation open: GO on the named export follows.
    const go = await c.go('disk0');
    assert.equal(go.at(-1)!.type, REP.ack);
    c.request(CMD.read, 1n, 0, 512);
    const r = await c.readReply();
    assert.equal(r.error, 0);
    assert.deepEqual(r.data, Buffer.alloc(512));
    c.close();
  }));

test('INFO and GO on an unknown export answer ERR_UNKNOWN and keep the connection', () =>
  withExport({ exportName: 'disk0' }, async (path) => {
    const c = await RawNbdClient.open(path);
    assert.deepEqual((await c.info('nope')).map((r) => r.type), [REP.errUnknown]);
    assert.deepEqual((await c.go('nope')).map((r) => r.type), [REP.errUnknown]);
    assert.equal((await c.go('')).at(-1)!.type, REP.ack);
    c.close();
  }));

test('INFO whose request count does not match its length is invalid', () =>
  withExport({}, async (path) => {
    const c = await RawNbdClient.open(path);
    const data = Buffer.alloc(4 + 0 + 2 + 2);
    data.writeUInt16BE(5, 4); // claims 5 requests, carries 1
    c.sendOption(OPT.go, data);
    assert.equal((await c.readOptionReply()).type, REP.errInvalid);
    const bad = Buffer.alloc(6);
    bad.writeUInt32BE(100, 0); // name longer than the option
    c.sendOption(OPT.info, bad);
    assert.equal((await c.readOptionReply()).type, REP.errInvalid);
    c.sendOption(OPT.info, Buffer.alloc(3));
    assert.equal((await c.readOptionReply()).type, REP.errInvalid);
    c.close();
  }));

test('STARTTLS, STRUCTURED_REPLY and unknown options are unsupported', () =>
  withExport({}, async (path) => {
    const c = await RawNbdClient.open(path);
    for (const opt of [OPT.startTls, OPT.structuredReply, 9, 10, 11, 0x1234]) {
      c.sendOption(opt);
      const r = await c.readOptionReply();
      assert.equal(r.type, REP.errUnsup, `option ${opt}`);
      assert.equal(r.option, opt);
    }
    c.close();
  }));

test('an oversized option is refused with ERR_TOO_BIG before its data is read, and the connection dropped', () =>
  withExport({}, async (path) => {
    const c = await RawNbdClient.open(path);
    c.sendOption(OPT.info, Buffer.alloc(0), 64 * MiB); // header only; the data never comes
    const r = await c.readOptionReply();
    assert.equal(r.type, REP.errTooBig);
    assert.equal(await c.closedByServer(), true);
  }));

test('bad option magic drops the connection', () =>
  withExport({}, async (path) => {
    const c = await RawNbdClient.open(path);
    c.write(Buffer.alloc(16, 0x55));
    assert.equal(await c.closedByServer(), true);
  }));

test('EXPORT_NAME replies size and flags, with 124 zero bytes unless NO_ZEROES', () =>
  withExport({ readOnly: true }, async (path) => {
    for (const clientFlags of [1, 3]) {
      const c = await RawNbdClient.open(path, clientFlags);
      c.sendOption(OPT.exportName, Buffer.from('mem'));
      const reply = await c.read(clientFlags === 3 ? 10 : 134);
      assert.equal(Number(reply.readBigUInt64BE(0)), 16 * MiB);
      assert.equal(reply.readUInt16BE(8), TFLAG.hasFlags | TFLAG.readOnly | TFLAG.flush);
      if (clientFlags === 1) assert.deepEqual(reply.subarray(10), Buffer.alloc(124));
      // Transmission starts right after.
      c.request(CMD.read, 7n, 4096, 4096);
      const r = await c.readReply();
      assert.equal(r.cookie, 7n);
      assert.equal(r.error, 0);
      c.close();
    }
  }));

test('EXPORT_NAME of an unknown export closes the connection', () =>
  withExport({}, async (path) => {
    const c = await RawNbdClient.open(path);
    c.sendOption(OPT.exportName, Buffer.from('other'));
    assert.equal(await c.closedByServer(), true);
  }));

test('transmission flags follow the target: no flush, no trim, no zeroes, no FUA', () =>
  withExport({ flush: false, discard: false, writeZeroes: false, fua: false }, async (path) => {
    const c = await RawNbdClient.open(path);
    const ex = infos(await c.info(''))!.get(INFO.export)!;
    assert.equal(ex.readUInt16BE(10), TFLAG.hasFlags);
    c.close();
  }));

test('ABORT is acknowledged and the connection closed', () =>
  withExport({}, async (path) => {
    const c = await RawNbdClient.open(path);
    c.sendOption(OPT.abort);
    const r = await c.readOptionReply();
    assert.equal(r.type, REP.ack);
    assert.equal(r.option, OPT.abort);
    assert.equal(await c.closedByServer(), true);
  }));

test('a client that skips fixed newstyle still gets the export', () =>
  withExport({}, async (path) => {
    const c = await RawNbdClient.open(path, 0);
    c.sendOption(OPT.exportName);
    const reply = await c.read(134);
    assert.equal(Number(reply.readBigUInt64BE(0)), 16 * MiB);
    c.close();
  }));

test('INFO sends the description when the export has one, and multi-conn when allowed', () =>
  withExport(
    {},
    async (path) => {
      const c = await RawNbdClient.open(path);
      const m = infos(await c.info('mem', [INFO.description]));
      assert.equal(m.get(INFO.description)!.toString('utf8', 2), 'a test disk');
      assert.equal(m.get(INFO.export)!.readUInt16BE(10) & TFLAG.multiConn, TFLAG.multiConn);
      c.close();
    },
    { description: 'a test disk', multiConn: true },
  ));

test('a client that does not finish the handshake in time is dropped', () =>
  withExport(
    {},
    async (path) => {
      const c = await RawNbdClient.open(path);
      const started = Date.now();
      assert.equal(await c.closedByServer(), true);
      assert.ok(Date.now() - started < 2000);
    },
    { handshakeTimeoutMs: 100 },
  ));
