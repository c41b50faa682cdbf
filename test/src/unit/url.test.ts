// parseUrl: what `wsblk connect URL` accepts, and which port it connects to.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseUrl } from '@wsblk/client';

test('a URL without a port gets 7690; an explicit port stays, even the scheme default', () => {
  const cases: Array<[string, string, string]> = [
    ['ws://h/x', 'ws://h:7690/x', '7690'],
    ['wss://h/x', 'wss://h:7690/x', '7690'],
    ['ws://h:7000/x?y', 'ws://h:7000/x?y', '7000'],
    ['ws://[::1]/x', 'ws://[::1]:7690/x', '7690'],
    ['ws://u:p@h:81/x', 'ws://u:p@h:81/x', '81'],
    // URL drops a scheme's default port from url.port: the connection then uses 80 / 443.
    ['ws://h:80/x', 'ws://h/x', ''],
    ['wss://h:443/x', 'wss://h/x', ''],
    ['WS://H:80/x', 'ws://h/x', ''],
    ['ws://[::1]:80/x', 'ws://[::1]/x', ''],
  ];
  for (const [text, href, port] of cases) {
    const u = parseUrl(text);
    assert.equal(u.href, href, text);
    assert.equal(u.port, port, text);
  }
});

test('not a URL, another scheme, or no export name: a final error that says so', () => {
  for (const [text, why] of [
    ['storage:7690/disk0', /scheme must be ws:\/\/ or wss:\/\//],
    ['http://h/x', /scheme must be ws:\/\/ or wss:\/\//],
    ['ws://h:7690/', /no export name/],
    ['ws://h:7690', /no export name/],
    ['not a url', /is not a URL/],
  ] as const) {
    assert.throws(() => parseUrl(text), (e: Error & { fatal?: boolean }) => why.test(e.message) && e.fatal === true, text);
  }
});
