'use strict';
// Webhook ingest: a provider's request as received, verified, applied once.
const assert = require('node:assert/strict');
const { test, captureEngine } = require('./helpers');

const options = { postmarkHeaderName: 'X-Hook-Secret', postmarkHeaderValue: 's3cret-value' };
const bounce = (id, email) =>
  JSON.stringify({ RecordType: 'Bounce', ID: id, Type: 'HardBounce', MessageID: `pm-${id}`, Email: email, BouncedAt: '2026-12-01T10:00:00Z' });

test('a Postmark hard bounce suppresses its recipient once; a bad secret changes nothing', async (t) => {
  const { engine } = await captureEngine(t);
  const events = [];
  engine.on('bounced', (e) => events.push(e));
  const request = (secret, body) => ({
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-hook-secret': secret },
    body: Buffer.from(body),
  });

  const refused = await engine.ingestWebhook('postmark', request('wrong', bounce(1, 'gone@example.com')), options);
  assert.ok(refused.httpStatus >= 400 && refused.httpStatus < 500);
  assert.equal(refused.outcome, 'rejected');
  assert.equal(await engine.isSuppressed('gone@example.com'), false);

  const r = await engine.ingestWebhook('postmark', request('s3cret-value', bounce(1, 'gone@example.com')), options);
  assert.equal(r.httpStatus, 200);
  assert.equal(r.outcome, 'events');
  assert.equal(r.suppressed, 1);
  assert.equal(r.events[0].type, 'bounced');
  assert.equal(r.events[0].bounce, 'hard');
  assert.equal(await engine.isSuppressed('gone@example.com'), true);

  const again = await engine.ingestWebhook('postmark', request('s3cret-value', bounce(1, 'gone@example.com')), options);
  assert.equal(again.duplicates, 1);
  assert.equal(again.suppressed, 0);
  await new Promise((res) => setTimeout(res, 20));
  assert.equal(events.length, 1, 'a redelivery reaches no listener');
  await assert.rejects(engine.ingestWebhook('carrier-pigeon', request('x', '{}')), TypeError);
});
