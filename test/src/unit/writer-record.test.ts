// The RBD lock's writer record: only the device whose secret hashes to it, on the lock's current
// owner, may take the lock back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { heldFor, parseWriterRecord, secretHashOf, writerRecord } from '@wsblk/server';

const mine = secretHashOf('a'.repeat(64));
const gw1 = '127.0.0.1:0/1111';

test('a record names the writer and the gateway, never the secret', () => {
  const text = writerRecord({ clientId: 'alpha', secretHash: mine, reclaim: false }, gw1);
  assert.doesNotMatch(text, /aaaa/);
  const rec = parseWriterRecord(text)!;
  assert.equal(rec.clientId, 'alpha');
  assert.equal(rec.gateway, gw1);
  assert.equal(rec.secretHash, mine);
  assert.ok(!Number.isNaN(Date.parse(rec.since)));
});

test('heldFor: the same secret on the lock\'s owner only', () => {
  const rec = parseWriterRecord(writerRecord({ clientId: 'alpha', secretHash: mine, reclaim: false }, gw1));
  assert.equal(heldFor(rec, gw1, mine), true);
  assert.equal(heldFor(rec, gw1, secretHashOf('b'.repeat(64))), false, 'another secret');
  assert.equal(heldFor(rec, '127.0.0.1:0/2222', mine), false, 'a record left by an earlier owner');
  const noSecret = parseWriterRecord(writerRecord({ clientId: 'alpha', reclaim: false }, gw1));
  assert.equal(heldFor(noSecret, gw1, mine), false, 'a writer without a secret cannot be reclaimed');
  assert.equal(heldFor(rec, gw1, 'abcd'), false, 'not a sha256');
});

test('parseWriterRecord: absent or foreign values are no record', () => {
  assert.equal(parseWriterRecord(null), undefined);
  assert.equal(parseWriterRecord('not json'), undefined);
  assert.equal(parseWriterRecord('{"clientId":"x"}'), undefined);
  assert.equal(heldFor(undefined, gw1, mine), false);
});
