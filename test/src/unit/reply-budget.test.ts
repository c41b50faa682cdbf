import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplyBudget, type Debtor } from '@wsblk/server';
import { waitFor } from '../support/server.js';

class Conn implements Debtor {
  debt = 0;
  retries = 0;
  owed(): number { return this.debt; }
  retry(): void { this.retries++; }
}

test('a READ fits while the connection and the total stay under their bounds; a connection that owes nothing always fits', () => {
  const b = new ReplyBudget(10, 15);
  const a = new Conn();
  const c = new Conn();
  b.join(a);
  b.join(c);
  assert.equal(b.fits(a, 100), true, 'owes nothing: one request larger than the bound still runs');
  a.debt = 6;
  assert.equal(b.fits(a, 4), true);
  assert.equal(b.fits(a, 5), false, 'over its own bound');
  c.debt = 8;
  b.update(c);
  assert.equal(b.owed, 14);
  assert.equal(b.fits(c, 2), false, 'over the total');
  const idle = new Conn();
  b.join(idle);
  assert.equal(b.fits(idle, 4), true, 'a connection that owes nothing is not starved by the others');
  b.leave(a);
  assert.equal(b.owed, 8);
  assert.equal(b.fits(c, 2), true);
});

test('a waiting connection is retried when a debt falls, and by the recheck timer when nothing tells', async () => {
  const b = new ReplyBudget(10, 100);
  const a = new Conn();
  const c = new Conn();
  b.join(a);
  b.join(c);
  c.debt = 5;
  b.update(c);
  b.wait(a);
  c.debt = 2;
  b.update(c);
  assert.equal(a.retries, 1, 'retried at once when a debt fell');
  c.debt = 0; // drained without a word (no update): the timer looks
  await waitFor(() => a.retries > 1, 1000, 'recheck');
  assert.equal(b.owed, 0);
  b.done(a);
  const before = a.retries;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(a.retries, before, 'done() stops the retries');
});
