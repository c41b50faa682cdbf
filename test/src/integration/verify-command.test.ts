// `wsblk verify` against real `wsblk serve` processes: identical exports, exactly the differing
// ranges, sizes that differ, unreachable exports, usage errors, and a verify beside a writer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Op } from '@wsblk/shared';
import { RemoteDisk } from '@wsblk/client';
import { freePort, tempDir, wsblk } from '../support/procs.js';
import { serve } from '../support/serve-process.js';

const MiB = 1 << 20;
const KiB64 = 64 << 10;

/** A deterministic image: every byte depends on its offset (so zeros are not what makes two equal). */
function image(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
  return b;
}

function writeTo(disk: RemoteDisk, offset: number, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => disk.submit({ op: Op.Write, offset, length: data.length, flags: 0, payload: data }, (status) => {
    if (status === 0) resolve();
    else reject(new Error(`write at ${offset}: status ${status}`));
  }));
}

test('identical exports on two servers: exit 0, no mismatch, JSON says identical', async (t) => {
  const dir = tempDir(t);
  const img = image(40 * MiB);
  writeFileSync(join(dir, 'a.img'), img);
  writeFileSync(join(dir, 'b.img'), img);
  const a = await serve(t, ['--export', `d=file:${join(dir, 'a.img')}`]);
  const b = await serve(t, ['--export', `d=file:${join(dir, 'b.img')}`, '--export', 'z=memory:40M']);
  const r = await wsblk(['verify', a.url('d'), b.url('d')]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `verified ${40 * MiB} bytes across 2 exports: 0 mismatching ranges (0 bytes)\n`);
  const j = await wsblk(['verify', '--json', a.url('d'), b.url('d')]);
  assert.equal(j.code, 0, j.stderr);
  assert.deepEqual(JSON.parse(j.stdout), { size: 40 * MiB, exports: [a.url('d'), b.url('d')], identical: true, mismatches: [], mismatchBytes: 0 });
  // The same data against an empty export of the same size: everything differs, one range.
  const z = await wsblk(['verify', a.url('d'), b.url('d'), b.url('z')]);
  assert.equal(z.code, 1, z.stderr);
  assert.match(z.stdout, new RegExp(`^mismatch: 0\\+${40 * MiB} \\(at 0 B, 40 MiB\\)\n`));
  assert.match(z.stdout, /across 3 exports: 1 mismatching range \(41943040 bytes\)/);
});

test('a few differing blocks: exit 1 and exactly those ranges, adjacent 64 KiB chunks merged', async (t) => {
  const dir = tempDir(t);
  const size = 40 * MiB; // more than one 16 MiB checksum request, and a range across their boundary
  const img = image(size);
  writeFileSync(join(dir, 'a.img'), img);
  const other = Buffer.from(img);
  const flip = (at: number) => { other.writeUInt8(other.readUInt8(at) ^ 0xff, at); };
  flip(5); // chunk 0
  other.fill(7, 3 * KiB64 + 100, 5 * KiB64 + 1); // chunks 3, 4 and 5: one range
  flip(16 * MiB - 1); // the last chunk of the first request ...
  flip(16 * MiB); // ... and the first of the second: one range across the boundary
  flip(size - 1); // the last chunk
  writeFileSync(join(dir, 'b.img'), other);
  const a = await serve(t, ['--export', `d=file:${join(dir, 'a.img')}`]);
  const b = await serve(t, ['--export', `d=file:${join(dir, 'b.img')}`]);
  const want = [
    { offset: 0, length: KiB64 },
    { offset: 3 * KiB64, length: 3 * KiB64 },
    { offset: 16 * MiB - KiB64, length: 2 * KiB64 },
    { offset: size - KiB64, length: KiB64 },
  ];
  const r = await wsblk(['verify', a.url('d'), b.url('d')]);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout,
    'mismatch: 0+65536 (at 0 B, 64 KiB)\n'
    + 'mismatch: 196608+196608 (at 192 KiB, 192 KiB)\n'
    + 'mismatch: 16711680+131072 (at 15.94 MiB, 128 KiB)\n'
    + 'mismatch: 41877504+65536 (at 39.94 MiB, 64 KiB)\n'
    + `verified ${size} bytes across 2 exports: 4 mismatching ranges (458752 bytes)\n`);
  const j = await wsblk(['verify', '--json', a.url('d'), b.url('d')]);
  assert.equal(j.code, 1, j.stderr);
  const out = JSON.parse(j.stdout) as { identical: boolean; mismatches: unknown; mismatchBytes: number };
  assert.equal(out.identical, false);
  assert.deepEqual(out.mismatches, want);
  assert.equal(out.mismatchBytes, 7 * KiB64);
});

test('exports of different sizes: exit 1 with both sizes named', async (t) => {
  const s = await serve(t, ['--export', 'a=memory:8M', '--export', 'b=memory:4M']);
  const r = await wsblk(['verify', s.url('a'), s.url('b')]);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `wsblk: the exports differ in size: ${s.url('a')} has 8388608 bytes (8 MiB), ${s.url('b')} has 4194304 bytes (4 MiB)\n`);
});

test('an unreachable or refused export: exit 3; fewer than two URLs or one twice: exit 2', async (t) => {
  const s = await serve(t, ['--export', 'a=memory:1M', '--export', 'b=memory:1M']);
  const down = `ws://127.0.0.1:${await freePort()}/a`;
  const gone = await wsblk(['verify', '--connect-timeout', '1', s.url('a'), down]);
  assert.equal(gone.code, 3, gone.stderr);
  assert.match(gone.stderr, /connection refused/);
  const unknown = await wsblk(['verify', s.url('a'), s.url('nope')]);
  assert.equal(unknown.code, 3, unknown.stderr);
  assert.match(unknown.stderr, /no export 'nope'/);
  const one = await wsblk(['verify', s.url('a')]);
  assert.equal(one.code, 2);
  assert.equal(one.stderr, 'wsblk: verify needs at least two exports to compare\n');
  // Spelled differently (default port, a token in the URL), it is still the same export.
  const twice = await wsblk(['verify', s.url('a'), s.url('b'), s.url('a').replace('ws://', 'ws://:tok@')]);
  assert.equal(twice.code, 2);
  assert.match(twice.stderr, /is given twice/);
  assert.doesNotMatch(twice.stderr, /tok/, 'the token is never shown');
});

test('verify runs read-only beside an attached writer, and sees what it wrote', async (t) => {
  const s = await serve(t, ['--export', 'a=memory:4M', '--export', 'b=memory:4M']);
  const writer = await RemoteDisk.connect({ url: s.url('a') });
  t.after(() => writer.close(1000));
  const same = await wsblk(['verify', '--progress', s.url('a'), s.url('b')]);
  assert.equal(same.code, 0, `${same.stderr}: a read-only session is let in beside the writer`);
  await writeTo(writer, 2 * MiB + 10, Buffer.from('changed'));
  const r = await wsblk(['verify', s.url('a'), s.url('b')]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /^mismatch: 2097152\+65536 \(at 2 MiB, 64 KiB\)\n/);
  // The writer was never fenced: its next write still lands.
  await writeTo(writer, 0, Buffer.from('still the writer'));
});
