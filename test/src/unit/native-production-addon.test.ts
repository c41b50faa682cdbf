// The production addon carries no test hooks: they are built into wsblk_native_test.node, which
// only the tests load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import * as native from '@wsblk/native';
import { testHooks } from '@wsblk/native/test-hooks';

const hookNames = ['abiLayout', 'uringFileRoundTrip', 'uringNopBatch', 'UBLK', 'testHooks'];
const addonPath = (name: string): string =>
  fileURLToPath(new URL(`../build/Release/${name}.node`, import.meta.resolve('@wsblk/native')));

test('the production addon exports none of the hook functions', () => {
  const prod = createRequire(import.meta.url)(addonPath('wsblk_native')) as Record<string, unknown>;
  assert.ok(typeof prod.fallocate === 'function', 'the production addon loaded');
  for (const name of hookNames) assert.equal(name in prod, false, `wsblk_native.node exports ${name}`);
  assert.equal('testHooks' in native, false, '@wsblk/native exports testHooks');
});

test('the production addon does not contain the hooks\' code', () => {
  const bytes = readFileSync(addonPath('wsblk_native'));
  for (const name of ['uringFileRoundTrip', 'uringNopBatch', 'wsblk:NopBatch']) {
    assert.equal(bytes.includes(name), false, `wsblk_native.node contains "${name}"`);
  }
});

test('the test addon is built alongside and answers', () => {
  const hooks = createRequire(import.meta.url)(addonPath('wsblk_native_test')) as Record<string, unknown>;
  for (const name of hookNames.slice(0, 4)) assert.ok(name in hooks, `wsblk_native_test.node lacks ${name}`);
  assert.equal(testHooks.abiLayout().sizes.ctrlCmd, 32);
});
