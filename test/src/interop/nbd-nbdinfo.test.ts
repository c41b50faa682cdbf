import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DISK_BYTES, exportForTest, haveTools, run, runOk } from './nbd-harness.js';

test('nbdinfo --json reports the size and what the export can do', async (t) => {
  if (!haveTools(t, 'nbdinfo')) return;
  const { uri } = await exportForTest(t);
  const info = JSON.parse((await runOk('nbdinfo', ['--json', uri])).stdout);
  assert.equal(info.protocol, 'newstyle-fixed');
  assert.equal(info.structured, false);
  const e = info.exports[0];
  assert.equal(e['export-size'], DISK_BYTES);
  assert.equal(e.is_read_only, false);
  assert.equal(e.can_flush, true);
  assert.equal(e.can_fua, true);
  assert.equal(e.can_trim, true);
  assert.equal(e.can_zero, true);
  assert.equal(e.can_cache, false);
  assert.equal(e.can_df, false);
  assert.equal(e.can_fast_zero, false);
  assert.equal(e.block_size_minimum, 1);
  assert.ok(e.block_size_preferred >= 512);
  assert.ok(e.block_size_maximum >= e.block_size_preferred);
});

test('nbdinfo --can answers yes for flush, fua, trim, zero and no for cache', async (t) => {
  if (!haveTools(t, 'nbdinfo')) return;
  const { uri } = await exportForTest(t);
  for (const what of ['flush', 'fua', 'trim', 'zero']) {
    const r = await run('nbdinfo', ['--can', what, uri]);
    assert.equal(r.code, 0, `--can ${what}: ${r.stderr}`);
  }
  const cache = await run('nbdinfo', ['--can', 'cache', uri]);
  assert.notEqual(cache.code, 0);
});

test('nbdinfo --list shows the export by name', async (t) => {
  if (!haveTools(t, 'nbdinfo')) return;
  const { uri } = await exportForTest(t);
  const list = JSON.parse((await runOk('nbdinfo', ['--list', '--json', uri])).stdout);
  assert.ok(list.exports.length >= 1);
  assert.equal(list.exports[0]['export-size'], DISK_BYTES);
});
