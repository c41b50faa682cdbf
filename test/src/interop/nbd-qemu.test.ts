import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportForTest, haveTools, run, runOk } from './nbd-harness.js';

function qemuIo(uri: string, ...commands: string[]) {
  return run('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), uri]);
}

test('qemu-io writes and verifies patterns; zeroed and discarded ranges read as zeroes', async (t) => {
  if (!haveTools(t, 'qemu-io')) return;
  const { uri } = await exportForTest(t);
  const r = await qemuIo(
    uri,
    'write -P 0xab 0 4M',
    'read -P 0xab 0 4M',
    'write -z 1M 1M',
    'discard 2M 1M',
    'flush',
    'read -P 0xab 0 1M',
    'read -P 0 1M 2M',
    'read -P 0xab 3M 1M',
    'write -f -P 0x5a 5M 64k', // FUA
    'read -P 0x5a 5M 64k',
    'write -P 0x11 6100000 777', // unaligned: minimum block size 1
    'read -P 0x11 6100000 777',
    'read -P 0 6099000 1000',
    'read -P 0 6100777 1000',
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, /fail|error/i);
  // A wrong pattern is noticed: the checks above are not vacuous.
  const wrong = await qemuIo(uri, 'read -P 0xab 1M 4k');
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stdout, /Pattern verification failed/);
});

test('qemu-io sees separate connections as one disk', async (t) => {
  if (!haveTools(t, 'qemu-io')) return;
  const { uri } = await exportForTest(t);
  await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0xcd 8M 1M', uri]);
  const r = await qemuIo(uri, 'read -P 0xcd 8M 1M');
  assert.equal(r.code, 0, r.stdout + r.stderr);
});

test('qemu-img convert copies a file to the export and compare finds them equal', async (t) => {
  if (!haveTools(t, 'qemu-img')) return;
  const { uri, dir } = await exportForTest(t);
  const file = join(dir, 'src.img');
  const data = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(2 << 20), randomBytes(3 << 20)]);
  writeFileSync(file, data);
  await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', file, uri]);
  // compare -s: strict, the export is larger than the file; compare only the file's length.
  const r = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', file, `json:{"driver":"raw","size":${data.length},"file":{"driver":"nbd","server":{"type":"unix","path":"${uri.split('socket=')[1]}"}}}`]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /Images are identical/);
});
