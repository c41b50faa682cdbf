// The client's target spec pieces: credentials taken out of a URL, and the reconnect backoff.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, splitCredentials } from '@wsblk/client';

test('a URL\'s credentials become the token (password, else user) and leave the URL, its explicit port kept', () => {
  const cases: Array<[string, string, string | undefined]> = [
    ['ws://:tok@h:81/x', 'ws://h:81/x', 'tok'],
    ['ws://user:tok@h/x', 'ws://h/x', 'tok'],
    ['ws://tok@h:80/x', 'ws://h:80/x', 'tok'],
    ['wss://u:p%40ss@[::1]:7000/x?y', 'wss://[::1]:7000/x?y', 'p@ss'],
    ['ws://u:p@ss@h/x', 'ws://h/x', 'p@ss'],
    ['ws://h:7690/x', 'ws://h:7690/x', undefined],
    ['ws://h/a@b', 'ws://h/a@b', undefined],
    ['not a url', 'not a url', undefined],
  ];
  for (const [text, url, token] of cases) assert.deepEqual(splitCredentials(text), token === undefined ? { url } : { url, token }, text);
});

test('backoff doubles from the first delay up to the cap, jitter stays within 0.75x-1.25x, reset starts over', () => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: false, giveUpAfterMs: 0 });
  assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000, 1000]);
  b.reset();
  assert.equal(b.next(), 100);
  const j = new Backoff({ initialMs: 1000, maxMs: 1000, jitter: true, giveUpAfterMs: 0 });
  for (let i = 0; i < 200; i++) {
    const d = j.next()!;
    assert.ok(d >= 750 && d <= 1250, String(d));
  }
});

test('backoff gives up at its deadline and never sleeps past it', async () => {
  const b = new Backoff({ initialMs: 1000, maxMs: 1000, jitter: false, giveUpAfterMs: 500 });
  const d = b.next()!;
  assert.ok(d <= 300 && d > 0, `${d}: at most the time left before the deadline, less a margin`);
  await new Promise((r) => setTimeout(r, 350));
  assert.equal(b.next(), undefined, 'past the deadline (less the margin): give up');
  assert.equal(new Backoff({ initialMs: 10, maxMs: 10, jitter: false, giveUpAfterMs: 0 }).leftMs, Infinity);
});
