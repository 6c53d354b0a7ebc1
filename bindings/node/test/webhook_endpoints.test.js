'use strict';
// Outbound webhook endpoints: configuration, a signed delivery to a
// receiver on 127.0.0.1, the outbox as read back, and metricsText().
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const { test, mailers, captureEngine, message, eventually } = require('./helpers');

// Loopback and plain http are refused by default; a test receiver needs both.
const testWebhooks = { allowHttp: true, allowPrivateTargets: true, pollIntervalMs: 20, timeoutMs: 5000 };

// An HTTP receiver on 127.0.0.1 that records each request and answers `status`.
async function receiver(t, status = 204) {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      res.writeHead(status).end();
    });
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  t.after(() => new Promise((res) => server.close(res)));
  return { url: `http://127.0.0.1:${server.address().port}/hooks/mail`, requests };
}

// Standard Webhooks: HMAC-SHA256 over "<id>.<timestamp>.<body>" with the
// secret's base64 bytes, as "v1,<base64>".
function signature(secret, id, timestamp, body) {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return 'v1,' + crypto.createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
}

test('an endpoint receives signed events; the outbox and metrics say so', async (t) => {
  const hook = await receiver(t);
  const { engine } = await captureEngine(t, { webhooks: testWebhooks });
  const stored = await engine.putWebhookEndpoint({ id: 'crm', url: hook.url, eventTypes: ['sent'], description: 'CRM' });
  assert.match(stored.secret, /^whsec_[A-Za-z0-9+/=]+$/);
  assert.deepEqual(stored.eventTypes, ['sent']);
  assert.equal(stored.enabled, true);
  const listed = await engine.webhookEndpoints();
  assert.equal(listed.length, 1);
  assert.equal(listed[0].secret, 'whsec_…');
  assert.equal((await engine.webhookEndpoint('crm')).description, 'CRM');
  assert.equal(await engine.webhookEndpoint('nope'), null);

  const r = await engine.send(message('ada@example.com'));
  await engine.suppress('no@example.com');
  await assert.rejects(engine.send(message('no@example.com')), mailers.SuppressedError);
  await eventually(() => hook.requests.length >= 1);
  assert.equal(hook.requests.length, 1, 'only the event type the filter admits');
  const req = hook.requests[0];
  assert.equal(req.method, 'POST');
  assert.equal(req.url, '/hooks/mail');
  assert.match(req.headers['content-type'], /application\/json/);
  const body = JSON.parse(req.body);
  assert.equal(body.type, 'email.sent');
  assert.equal(body.data.send_id, r.sendId);
  assert.equal(req.headers['webhook-signature'], signature(stored.secret, req.headers['webhook-id'], req.headers['webhook-timestamp'], req.body));

  let counts;
  await eventually(async () => (counts = await engine.webhookDeliveryCounts('crm')).delivered === 1);
  assert.equal(counts.delivered, 1);
  assert.equal(counts.pending + counts.claimed + counts.failed, 0);
  assert.ok(counts.lastDelivered instanceof Date);
  const rows = await engine.webhookDeliveries({ endpoint: 'crm', state: 'delivered' });
  assert.equal(rows.length, 1);
  assert.equal(rows[0].messageId, req.headers['webhook-id']);
  assert.equal(rows[0].eventType, 'sent');
  assert.equal(rows[0].lastStatus, 204);
  assert.equal(rows[0].attempts, 1);
  assert.deepEqual(JSON.parse(rows[0].payload), body);
  assert.deepEqual(await engine.webhookDeliveries({ afterId: rows[0].id }), []);
  assert.equal((await engine.webhookDeliveryCounts()).delivered, 1);

  const metrics = await engine.metricsText();
  assert.match(metrics, /^mailers_webhook_endpoint_enabled\{endpoint="crm"\} 1$/m);
  assert.match(metrics, /^mailers_webhook_deliveries\{endpoint="crm",state="delivered"\} 1$/m);
  assert.match(metrics, /^mailers_sends_total\{outcome="accepted"\} 1$/m);
});

test('endpoints: replace, disable, enable, remove, and refusals that change nothing', async (t) => {
  const { engine } = await captureEngine(t, { webhooks: testWebhooks });
  const secret = 'whsec_' + Buffer.alloc(32, 7).toString('base64');
  const first = await engine.putWebhookEndpoint({ id: 'crm', url: 'https://crm.example.com/hook', secret });
  assert.equal(first.secret, secret);
  assert.deepEqual(first.eventTypes, []);
  // Replaced without a secret: the stored one is kept.
  const second = await engine.putWebhookEndpoint({ id: 'crm', url: 'https://crm.example.com/v2', eventTypes: ['bounced', 'complained'] });
  assert.equal(second.secret, secret);
  assert.equal(second.url, 'https://crm.example.com/v2');

  await engine.disableWebhookEndpoint('crm', { reason: 'maintenance' });
  let ep = await engine.webhookEndpoint('crm');
  assert.equal(ep.enabled, false);
  assert.equal(ep.disabledReason, 'maintenance');
  await engine.enableWebhookEndpoint('crm', { retryFailed: true, failedSince: new Date(Date.now() - 3600e3) });
  ep = await engine.webhookEndpoint('crm');
  assert.equal(ep.enabled, true);
  assert.equal(ep.disabledReason, '');

  const before = (await engine.auditLog()).length;
  await assert.rejects(engine.putWebhookEndpoint({ id: 'x', url: 'ftp://crm.example.com/' }), mailers.InvalidArgumentError);
  await assert.rejects(engine.putWebhookEndpoint({ id: 'x', url: 'https://crm.example.com/', secret: 'not-a-secret' }), mailers.InvalidArgumentError);
  await assert.rejects(engine.putWebhookEndpoint({ id: 'bad id', url: 'https://crm.example.com/' }), mailers.InvalidArgumentError);
  await assert.rejects(engine.putWebhookEndpoint({ id: 'x', url: 'https://crm.example.com/', eventTypes: ['exploded'] }), /eventTypes must be one of: queued, sent/);
  await assert.rejects(engine.putWebhookEndpoint({ id: 'x', url: 42 }), TypeError);
  await assert.rejects(engine.disableWebhookEndpoint('nope'), mailers.NotFoundError);
  await assert.rejects(engine.enableWebhookEndpoint('nope'), mailers.NotFoundError);
  assert.equal((await engine.auditLog()).length, before);
  assert.deepEqual((await engine.webhookEndpoints()).map((e) => e.id), ['crm']);
  const log = JSON.stringify(await engine.auditLog());
  assert.ok(!log.includes(secret.slice(10)), 'the secret never reaches the audit log');

  assert.equal(await engine.removeWebhookEndpoint('crm'), true);
  assert.equal(await engine.removeWebhookEndpoint('crm'), false);
  assert.deepEqual(await engine.webhookEndpoints(), []);
});

test('by default a loopback or plain-http target is refused', async (t) => {
  const { engine } = await captureEngine(t);
  await assert.rejects(engine.putWebhookEndpoint({ id: 'local', url: 'https://127.0.0.1/hook' }), mailers.InvalidArgumentError);
  await assert.rejects(engine.putWebhookEndpoint({ id: 'plain', url: 'http://crm.example.com/hook' }), mailers.InvalidArgumentError);
  assert.deepEqual(await engine.webhookEndpoints(), []);
  await assert.rejects(mailers.Engine.open({ sqlite: ':memory:', webhooks: { maxAttempts: 0 } }), mailers.InvalidArgumentError);
  await assert.rejects(mailers.Engine.open({ sqlite: ':memory:', webhooks: { allowHttp: 'yes' } }), TypeError);
});
