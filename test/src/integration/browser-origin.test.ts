// Browsers: an upgrade whose Origin is another site is refused unless `serve --allow-origin`
// names it; clients that send no Origin (every non-browser client) are not concerned.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SilentPeer } from '../support/silent-peer.js';
import { serve } from '../support/serve-process.js';

async function answer(port: number, headers: Record<string, string>): Promise<string> {
  try {
    const p = await SilentPeer.open(port, 'disk0', headers);
    p.destroy();
    return '101';
  } catch (e) {
    return (e as Error).message;
  }
}

test('a page of another site is refused with 403 that names its origin and --allow-origin; no Origin and the same site are let in', async (t) => {
  const s = await serve(t, ['--export', 'disk0=memory:1M']);
  const refused = await answer(s.port, { Origin: 'https://evil.example' });
  assert.match(refused, /^HTTP\/1\.1 403 /);
  assert.match(refused, /origin https:\/\/evil\.example is another site; start the server with --allow-origin https:\/\/evil\.example/);
  // DNS rebinding: the page's name now points at 127.0.0.1, so Origin and Host agree, on a name.
  assert.match(await answer(s.port, { Origin: `http://evil.example:${s.port}`, Host: `evil.example:${s.port}` }), /^HTTP\/1\.1 403 /);
  assert.equal(await answer(s.port, {}), '101', 'no Origin: not a browser');
  assert.equal(await answer(s.port, { Origin: `http://127.0.0.1:${s.port}` }), '101', 'a page of the server\'s own address');
  assert.equal(await answer(s.port, { Origin: `http://localhost:${s.port}`, Host: `localhost:${s.port}` }), '101');
});

test('--allow-origin lets the named origin in (and * any)', async (t) => {
  const one = await serve(t, ['--export', 'disk0=memory:1M', '--allow-origin', 'https://app.example']);
  assert.equal(await answer(one.port, { Origin: 'https://app.example' }), '101');
  assert.match(await answer(one.port, { Origin: 'https://other.example' }), /^HTTP\/1\.1 403 /);
  const any = await serve(t, ['--export', 'disk0=memory:1M', '--allow-origin', '*']);
  assert.equal(await answer(any.port, { Origin: 'https://other.example' }), '101');
});
