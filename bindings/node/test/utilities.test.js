'use strict';
// What needs no engine: templates, addresses, the Standard Webhooks check.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { test, mailers } = require('./helpers');

test('a template compiles once, names its variables, checks and renders', () => {
  const t = new mailers.Template({ subject: '{Hi|Hello} {{first_name|there}}', text: 'About {{company}}.' });
  assert.deepEqual(t.variables(), ['company', 'first_name']);
  assert.deepEqual(t.requiredVariables(), ['company']);
  assert.deepEqual(t.check({}), { missing: ['company'], invalid: [] });
  const seed = mailers.templateSeed('enrollment-1', 1);
  assert.equal(typeof seed, 'bigint');
  assert.equal(seed, mailers.templateSeed('enrollment-1', 1));
  const r = t.render({ company: 'Acme' }, seed);
  assert.equal(r.text, 'About Acme.');
  assert.ok(['Hi there', 'Hello there'].includes(r.subject));
  assert.deepEqual(t.render({ company: 'Acme' }, seed), r);

  const missing = (() => { try { t.render({}); } catch (e) { return e; } })();
  assert.ok(missing instanceof mailers.InvalidArgumentError);
  assert.equal(missing.templateError.part, 'text');
  assert.throws(() => t.render({ company: 1 }), TypeError);
  assert.throws(() => t.render({}, -1), TypeError);
});

test('a template that does not compile says where', () => {
  const err = (() => { try { new mailers.Template({ html: '<p>Hi\n{{first_name</p>' }); } catch (e) { return e; } })();
  assert.ok(err instanceof mailers.InvalidArgumentError);
  assert.deepEqual([err.templateError.part, err.templateError.line, err.templateError.column], ['html', 2, 1]);
});

test('addresses: the suppression key and the parts', () => {
  assert.equal(mailers.normaliseAddress('Jane.Doe+news@GMail.com'), 'jane.doe+news@gmail.com');
  assert.equal(mailers.normaliseAddress('Jane.Doe+news@GMail.com', { foldPlusTags: true, foldGmailDots: true }), 'janedoe@gmail.com');
  assert.deepEqual(mailers.parseAddress('"Doe, Jane" <jane@example.com>'), { address: 'jane@example.com', displayName: 'Doe, Jane' });
  assert.throws(() => mailers.normaliseAddress('nope'), mailers.InvalidAddressError);
  assert.throws(() => mailers.parseAddress('<broken'), mailers.InvalidAddressError);
  assert.throws(() => mailers.normaliseAddress(3), TypeError);
});

test('verifyWebhookSignature checks a Standard Webhooks request', () => {
  const key = crypto.randomBytes(24);
  const secret = `whsec_${key.toString('base64')}`;
  const body = '{"type":"email.sent"}';
  const now = new Date('2026-12-07T09:00:00Z');
  const ts = String(Math.floor(now.getTime() / 1000));
  const sig = crypto.createHmac('sha256', key).update(`msg_1.${ts}.${body}`).digest('base64');
  const headers = { 'Webhook-Id': 'msg_1', 'webhook-timestamp': ts, 'webhook-signature': `v1,${sig}` };
  assert.deepEqual(mailers.verifyWebhookSignature(secret, headers, body, { now }), { ok: true, httpStatus: 200, reason: '' });
  assert.equal(mailers.verifyWebhookSignature(secret, headers, Buffer.from(body), { now }).ok, true);
  const tampered = mailers.verifyWebhookSignature(secret, headers, body + ' ', { now });
  assert.equal(tampered.ok, false);
  assert.equal(tampered.httpStatus, 403);
  const stale = mailers.verifyWebhookSignature(secret, headers, body, { now: new Date(now.getTime() + 3600e3) });
  assert.equal(stale.ok, false);
});
