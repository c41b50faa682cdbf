import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { TokenAuth, readTokenFile } from '@wsblk/server';
import { tempDir } from '../support/server.js';

function withFile(text: string, fn: (path: string) => void): void {
  const t = tempDir('wsblk-auth-');
  try {
    const path = t.path('tokens');
    writeFileSync(path, text);
    fn(path);
  } finally {
    t.cleanup();
  }
}

function loaded(text: string): TokenAuth {
  const auth = new TokenAuth();
  withFile(text, (path) => auth.loadFile(path));
  return auth;
}

test('with no token configured every client may open every export read-write', () => {
  const auth = new TokenAuth();
  assert.equal(auth.open, true);
  assert.deepEqual(auth.check(undefined, 'disk0'), { ok: true, readOnly: false });
  assert.deepEqual(auth.check('Bearer whatever', 'disk0'), { ok: true, readOnly: false });
});

test('a token file grants read-only or read-write access to listed exports, or to all with *', () => {
  const auth = loaded([
    '# tokens for the lab',
    'alltokens1',
    'startoken1 *',
    'rotoken001 disk0,disk1 ro  # read-only pair',
    '',
    '   rwtoken01   disk2   rw   ',
    'star-ro-tok * ro',
  ].join('\n'));
  assert.equal(auth.open, false);
  assert.deepEqual(auth.check('Bearer alltokens1', 'anything'), { ok: true, readOnly: false });
  assert.deepEqual(auth.check('Bearer startoken1', 'disk9'), { ok: true, readOnly: false });
  assert.deepEqual(auth.check('Bearer rotoken001', 'disk0'), { ok: true, readOnly: true });
  assert.deepEqual(auth.check('Bearer rotoken001', 'disk1'), { ok: true, readOnly: true });
  assert.equal(auth.check('Bearer rotoken001', 'disk2').ok, false);
  assert.deepEqual(auth.check('Bearer rwtoken01', 'disk2'), { ok: true, readOnly: false });
  assert.deepEqual(auth.check('Bearer star-ro-tok', 'disk7'), { ok: true, readOnly: true });
});

test('a comment-only or blank file configures no token (the server stays open)', () => {
  assert.equal(loaded('# nothing here\n\n   \n').open, true);
});

test('check() answers 401 without a bearer token or with an unknown one, 403 for an export not granted', () => {
  const auth = loaded('goodtoken1 disk0 rw\n');
  assert.deepEqual(auth.check(undefined, 'disk0'), { ok: false, status: 401, reason: 'a bearer token is required' });
  assert.equal((auth.check('Basic Zm9vOmJhcg==', 'disk0') as { status: number }).status, 401);
  assert.equal((auth.check('Bearer', 'disk0') as { status: number }).status, 401);
  assert.deepEqual(auth.check('Bearer wrongtoken', 'disk0'), { ok: false, status: 401, reason: 'unknown token' });
  assert.deepEqual(auth.check('Bearer goodtoken1', 'disk1'), { ok: false, status: 403, reason: "token may not open export 'disk1'" });
  assert.deepEqual(auth.check('bearer   goodtoken1 ', 'disk0'), { ok: true, readOnly: false }, 'the scheme is case-insensitive');
});

test('a token is compared whole, not by prefix', () => {
  const auth = loaded('goodtoken1\n');
  assert.equal(auth.check('Bearer goodtoken', 'd').ok, false);
  assert.equal(auth.check('Bearer goodtoken12', 'd').ok, false);
  assert.equal(auth.check('Bearer goodtoken1 extra', 'd').ok, false);
});

test('a bad line in the token file is refused with its file and line number', () => {
  withFile('goodtoken1\n# ok\ntoken002 disk0 rx\n', (path) => {
    assert.throws(() => new TokenAuth().loadFile(path), (e: Error) => e.message === `${path}:3: expected 'TOKEN [EXPORT,...|*] [ro|rw]'`);
  });
  withFile('goodtoken1 disk0 ro extra\n', (path) => {
    assert.throws(() => new TokenAuth().loadFile(path), (e: Error) => e.message.startsWith(`${path}:1: expected`));
  });
  withFile('\n\nshort\n', (path) => {
    assert.throws(() => new TokenAuth().loadFile(path), (e: Error) => e.message === `${path}:3: a token must be at least 8 characters long`);
  });
});

test('a missing token file is refused with its path', () => {
  assert.throws(() => new TokenAuth().loadFile('/nonexistent/wsblk-tokens'), /^Error: cannot read token file \/nonexistent\/wsblk-tokens: /);
});

test('add() refuses tokens shorter than 8 characters', () => {
  assert.throws(() => new TokenAuth().add('1234567', { exports: '*', readOnly: false }), /at least 8 characters/);
  const auth = new TokenAuth();
  auth.add('12345678', { exports: new Set(['a']), readOnly: true });
  assert.deepEqual(auth.check('Bearer 12345678', 'a'), { ok: true, readOnly: true });
});

test('readTokenFile returns the first token of a client token file', () => {
  withFile('# my token\n\n  clienttoken99  disk0 rw\nother\n', (path) => assert.equal(readTokenFile(path), 'clienttoken99'));
  withFile('# only comments\n\n', (path) => assert.throws(() => readTokenFile(path), /holds no token/));
  assert.throws(() => readTokenFile('/nonexistent/token'), /cannot read token file/);
});
