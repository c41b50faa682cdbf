import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend, FileBackend, openBackend, parseExportSpec } from '@wsblk/server';
import { tempDir } from '../support/server.js';

test('a memory export spec gives name, size, block size and mode', () => {
  assert.deepEqual(parseExportSpec('disk0=memory:64M'), { name: 'disk0', kind: 'memory', size: 64 << 20, readOnly: false, blockSize: 512 });
  assert.deepEqual(parseExportSpec('scratch.1=memory:1G,ro,bs=4096'), { name: 'scratch.1', kind: 'memory', size: 1 << 30, readOnly: true, blockSize: 4096 });
  assert.equal(parseExportSpec('d=memory:1M,ro,rw').readOnly, false, 'the last of ro/rw wins');
  assert.equal(parseExportSpec('d=memory:1M,block-size=4096').blockSize, 4096);
});

test('a file export spec gives path, optional size and mode', () => {
  assert.deepEqual(parseExportSpec('disk0=file:/srv/disk0.img'), { name: 'disk0', kind: 'file', path: '/srv/disk0.img', readOnly: false, blockSize: 512 });
  assert.deepEqual(parseExportSpec('d_1=file:rel/x.img,size=10G,ro,bs=512'), { name: 'd_1', kind: 'file', path: 'rel/x.img', size: 10 * 2 ** 30, readOnly: true, blockSize: 512 });
});

function refuses(spec: string, message: RegExp): void {
  assert.throws(() => parseExportSpec(spec), (e: Error) => {
    assert.match(e.message, message);
    return true;
  }, spec);
}

test('bad export specs are refused with a message that quotes the spec and says what is wanted', () => {
  refuses('disk0', /^--export 'disk0': expected NAME=file:PATH\[,size=SIZE\]\[,ro\] or NAME=memory:SIZE$/);
  refuses('=memory:1M', /^--export '=memory:1M': expected NAME=/);
  refuses('bad/name=memory:1M', /export name must be 1-64 of A-Z a-z 0-9 \. _ -/);
  refuses(`${'x'.repeat(65)}=memory:1M`, /export name must be 1-64/);
  refuses('d=memory', /memory: needs a size, e\.g\. memory:1G/);
  refuses('d=memory:', /memory: needs a size/);
  refuses('d=file:', /file: needs a path/);
  refuses('d=file', /file: needs a path/);
  refuses('d=nbd:host', /unknown backend 'nbd' \(file or memory\)/);
  refuses('d=memory:lots', /invalid size 'lots'/);
  refuses('d=memory:1M,rw=1', /unknown option 'rw=1'/);
  refuses('d=memory:1M,size=2M', /unknown option 'size=2M' \(size=SIZE for files, ro, bs=512\|4096\)/);
  refuses('d=memory:1M,bs=1024', /unknown option 'bs=1024'/);
  refuses('d=memory:1M,sparse', /unknown option 'sparse'/);
  refuses('d=file:/x,size=', /unknown option 'size='/);
});

test('a size that is zero or not a multiple of the block size is refused', () => {
  refuses('d=memory:0', /size must be a non-zero multiple of the block size 512/);
  refuses('d=memory:1000', /non-zero multiple of the block size 512/);
  refuses('d=memory:6K,bs=4096', /non-zero multiple of the block size 4096/);
  refuses('d=file:/x,size=100', /non-zero multiple of the block size 512/);
});

test('openBackend opens a memory or file backend as the spec says', async () => {
  const mem = await openBackend(parseExportSpec('m=memory:1M,ro,bs=4096'));
  assert.ok(mem instanceof MemoryBackend);
  assert.deepEqual([mem.info.size, mem.info.readOnly, mem.info.blockSize], [1 << 20, true, 4096]);
  await mem.close();
  const t = tempDir('wsblk-exports-');
  try {
    const file = await openBackend(parseExportSpec(`f=file:${t.path('f.img')},size=2M`));
    assert.ok(file instanceof FileBackend);
    assert.equal(file.info.size, 2 << 20);
    await file.close();
  } finally {
    t.cleanup();
  }
});

test('rbd:POOL/IMAGE takes conf=, id= and ro; a malformed one is refused in one line', () => {
  assert.deepEqual(parseExportSpec('c=rbd:pool1/img0,conf=/etc/ceph/other.conf,id=wsblk,ro'), {
    name: 'c', kind: 'rbd', pool: 'pool1', image: 'img0', conf: '/etc/ceph/other.conf', id: 'wsblk', readOnly: true, blockSize: 512,
  });
  assert.deepEqual(parseExportSpec('c=rbd:rbd/disk'), { name: 'c', kind: 'rbd', pool: 'rbd', image: 'disk', readOnly: false, blockSize: 512 });
  refuses('c=rbd:disk', /rbd: needs POOL\/IMAGE, e\.g\. rbd:rbd\/disk0$/);
  refuses('c=rbd:a/b/c', /rbd: needs POOL\/IMAGE/);
  refuses('c=rbd:a/b,size=1G', /unknown option 'size=1G' \(conf=FILE, id=CLIENT, ro, bs=512\|4096\)$/);
  refuses('c=memory:1M,conf=/x', /unknown option 'conf=\/x'/);
});
