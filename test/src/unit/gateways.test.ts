// The order a device tries its gateways in (connect URL --failover URL2 ...).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Gateways } from '@wsblk/client';

const [a, b, c] = ['ws://a:7690/d', 'ws://b:7690/d', 'ws://c:7690/d'];

test('a round tries the gateway the session lives on, then the others in list order', () => {
  const g = new Gateways([a, b, c]);
  assert.deepEqual(g.round(), [a, b, c]);
  assert.equal(g.arrivedAt(b), true, 'a move');
  assert.deepEqual(g.round(), [b, a, c], 'the current one first, then from the primary on');
  assert.equal(g.arrivedAt(b), false, 'back on the same gateway: no move');
  assert.equal(g.arrivedAt(c), true);
  assert.deepEqual(g.round(), [c, a, b]);
  assert.equal(g.moves, 2);
  assert.equal(g.arrivedAt('ws://elsewhere:7690/d'), false, 'a URL not in the list changes nothing');
  assert.equal(g.current, c);
});

test('a session to resume starts the rounds on its gateway; duplicates and an unknown gateway fall back to the list', () => {
  assert.deepEqual(new Gateways([a, b, c], b).round(), [b, a, c]);
  assert.deepEqual(new Gateways([a, b, a], undefined).round(), [a, b]);
  const unknown = new Gateways([a, b], 'ws://gone:7690/d');
  assert.equal(unknown.current, a);
  assert.equal(unknown.count, 2);
  assert.deepEqual(new Gateways([a]).round(), [a], 'one server: one try a round, as before');
});
