'use strict';
// Erasure, export and retention (docs/privacy.md), access-control reads and
// changes, findQueued, latencies, and webhooks parsed and applied in two steps.
const assert = require('node:assert/strict');
const { test, mailers, captureEngine, message } = require('./helpers');

const lastSeq = async (engine) => (await engine.auditLog()).at(-1).seq;
const tomorrow = () => new Date(Date.now() + 86400 * 1000);

test('erasePerson keeps the person suppressed and says what it removed', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.send(message('Ada <ada@example.com>', { idempotencyKey: 'crm:ada@example.com' }));
  await engine.enqueue(message('ada@example.com'), { notBefore: tomorrow() });
  await engine.suppress('ada@example.com', { reason: 'unsubscribe' });

  const r = await engine.erasePerson('ada@example.com');
  assert.match(r.hash, /^erased:[0-9a-f]{64}$/);
  assert.equal(r.wasSuppressed, true);
  assert.ok(r.at instanceof Date);
  assert.equal(r.erased.sends, 1);
  assert.equal(r.erased.queued, 1);
  assert.equal(r.erased.queueCancelled, 1);
  assert.ok(r.erased.suppressionRows >= 1);
  assert.equal(r.auditSeq, await lastSeq(engine));
  const [record] = await engine.auditLog(r.auditSeq);
  assert.equal(record.action, 'person.erase');
  assert.ok(!JSON.stringify(record).includes('ada@example.com'));

  assert.equal(await engine.isSuppressed('ada@example.com'), true);
  await assert.rejects(engine.send(message('ada@example.com')), mailers.SuppressedError);
  assert.equal((await engine.verifyAudit()).ok, true);

  const again = await engine.erasePerson('ada@example.com');
  assert.equal(again.hash, r.hash);
  assert.ok(Object.values(again.erased).every((n) => n === 0));
});

test('erasePerson and exportPerson refuse bad input and change nothing', async (t) => {
  const { engine } = await captureEngine(t);
  const before = await lastSeq(engine);
  await assert.rejects(engine.erasePerson('not an address'), mailers.InvalidAddressError);
  await assert.rejects(engine.exportPerson('not an address'), mailers.InvalidAddressError);
  await assert.rejects(engine.erasePerson(42), TypeError);
  await assert.rejects(engine.purgeRetained({ sends: 7 * 86400 }), mailers.InvalidArgumentError);
  await assert.rejects(engine.purgeRetained({ sends: -1 }), TypeError);
  await assert.rejects(engine.purgeRetained({ counts: 30 * 86400 }), mailers.InvalidArgumentError);
  await assert.rejects(engine.purgeRetained('30 days'), TypeError);
  assert.equal(await lastSeq(engine), before);
});

test('exportPerson returns what the workspace holds about an address', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.send(message('bob@example.com'));
  await engine.suppress('bob@example.com', { reason: 'complaint' });
  const doc = await engine.exportPerson('Bob@Example.com');
  assert.equal(doc.address.toLowerCase(), 'bob@example.com');
  assert.equal(doc.suppressed, true);
  assert.equal(doc.sends.length, 1);
  for (const key of ['suppression', 'suppression_history', 'events', 'enrollments', 'queued', 'audit'])
    assert.ok(key in doc, key);
  assert.equal((await engine.auditLog()).at(-1).action, 'person.export');
});

test('purgeRetained forgets sends past the window', async (t) => {
  const start = new Date('2026-11-30T08:00:00Z');
  const { engine } = await captureEngine(t, { manualClock: start });
  await engine.send(message('old@example.com', { idempotencyKey: 'k1' }));
  engine.setTime(new Date(start.getTime() + 10 * 86400 * 1000));
  await engine.send(message('new@example.com'));

  const kept = await engine.purgeRetained({});
  assert.deepEqual([kept.sends, kept.webhookDeliveries], [0, 0]);
  const r = await engine.purgeRetained({ sends: 8 * 86400, webhookDeliveries: 30 * 86400 });
  assert.equal(r.sends, 1);
  assert.equal(r.webhookDeliveries, 0);
  assert.equal(r.at.getTime(), engine.now().getTime());
  assert.equal((await engine.auditLog(r.auditSeq))[0].action, 'retention.purge');
  assert.deepEqual([r.auditRecords, r.anchorSeq], [0, 0]);
  // Audit records older than 8 days go; the chain still verifies from its anchor.
  const a = await engine.purgeRetained({ audit: 8 * 86400 });
  assert.ok(a.auditRecords > 0);
  assert.equal(a.anchorSeq, a.auditRecords + 1);
  assert.equal((await engine.auditLog())[0].seq, a.anchorSeq);
  assert.deepEqual(await engine.verifyAudit(), { ok: true, badSeq: null });
  const again = await engine.send(message('old@example.com', { idempotencyKey: 'k1' }));
  assert.equal(again.duplicate, false);
});

test('roles and grants: accessControl, revokeAccess, removeRole', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.putRole({ id: 'sender', permissions: ['send', 'enqueue'] });
  await engine.putRole({ id: 'admin', permissions: ['manage_access'] });
  await engine.grantAccess({ principal: 'bob', role: 'sender', scope: { kind: 'pool', id: 'out' } });
  await engine.grantAccess({ principal: 'ops@brand.com', role: 'admin' });
  let policy = await engine.accessControl();
  assert.equal(policy.enabled, false);
  assert.deepEqual(policy.roles, [
    { id: 'admin', permissions: ['manage_access'] },
    { id: 'sender', permissions: ['send', 'enqueue'] },
  ]);
  assert.ok(policy.grants.some((g) => g.principal === 'bob' && g.scope.kind === 'pool' && g.scope.id === 'out'));

  await engine.setAccessControl(true);
  assert.equal((await engine.accessControl()).enabled, true);
  await engine.revokeAccess({ principal: 'bob', role: 'sender', scope: { kind: 'pool', id: 'out' } });
  await assert.rejects(engine.revokeAccess({ principal: 'bob', role: 'sender', scope: { kind: 'pool', id: 'out' } }),
                       mailers.NotFoundError);
  await engine.grantAccess({ principal: 'carol', role: 'sender' });
  await engine.removeRole('sender');
  policy = await engine.accessControl();
  assert.deepEqual(policy.roles.map((r) => r.id), ['admin']);
  assert.ok(policy.grants.every((g) => g.role !== 'sender'));
  const before = await lastSeq(engine);
  await assert.rejects(engine.removeRole('sender'), mailers.NotFoundError);
  await assert.rejects(engine.removeRole(7), TypeError);
  assert.equal(await lastSeq(engine), before);
});

test('findQueued reads one queue item', async (t) => {
  const { engine } = await captureEngine(t);
  const id = await engine.enqueue(message('q@example.com'), { notBefore: tomorrow(), origin: 'crm' });
  const q = await engine.findQueued(id);
  assert.equal(q.id, id);
  assert.equal(q.state, 'waiting');
  assert.equal(q.origin, 'crm');
  assert.equal(await engine.findQueued(id + 1000), null);
  await assert.rejects(engine.findQueued('1'), TypeError);
});

test('latencies measure each stage of the send pipeline', async (t) => {
  const { engine } = await captureEngine(t);
  assert.equal((await engine.latencies()).total.total, 0);
  for (let i = 0; i < 3; i++) await engine.send(message(`l${i}@example.com`));
  const lat = await engine.latencies();
  assert.equal(lat.total.total, 3);
  assert.equal(lat.handoff.total, 3);
  assert.equal(lat.total.counts.length, 32);
  assert.equal(lat.total.counts.reduce((a, b) => a + b, 0), 3);
  assert.ok(lat.total.sumUs > 0 && lat.total.p50Us >= 2 && lat.total.p99Us >= lat.total.p50Us);
});

test('parseWebhook reads a request without applying it; applyWebhook applies it once', async (t) => {
  const { engine } = await captureEngine(t);
  const sent = await engine.send(message('hb@example.com'));
  const body = JSON.stringify([{ event: 'bounce', type: 'bounce', email: 'hb@example.com', timestamp: 1790000000,
                                 sg_event_id: 'e1', mailers_send_id: sent.sendId }]);
  const request = { method: 'POST', headers: { 'content-type': 'application/json' }, body };
  const parsed = mailers.parseWebhook('sendgrid', request, { verify: false });
  assert.equal(parsed.httpStatus, 200);
  assert.equal(parsed.outcome, 'events');
  assert.equal(parsed.provider, 'sendgrid');
  assert.deepEqual(parsed.events.map((e) => [e.type, e.recipient]), [['bounced', 'hb@example.com']]);
  assert.ok(!Object.keys(parsed).includes('_parsed'));
  assert.equal(await engine.isSuppressed('hb@example.com'), false);

  const applied = await engine.applyWebhook(parsed);
  assert.equal(applied.suppressed, 1);
  assert.equal(applied.events[0].mailbox, 'rep1');
  assert.equal(await engine.isSuppressed('hb@example.com'), true);
  assert.equal((await engine.applyWebhook(parsed)).duplicates, 1);

  const refused = mailers.parseWebhook('sendgrid', request);
  assert.equal(refused.outcome, 'rejected');
  assert.equal((await engine.applyWebhook(refused)).suppressed, 0);
  assert.throws(() => mailers.parseWebhook('pigeon', request), TypeError);
  await assert.rejects(engine.applyWebhook({ ...parsed }), TypeError);
});

test('suppressionRules reads the folding rules in force', async (t) => {
  const { engine } = await captureEngine(t);
  assert.deepEqual(await engine.suppressionRules(), { foldPlusTags: false, foldGmailDots: false });
  const { engine: folding } = await captureEngine(t, { suppression: { foldPlusTags: true } });
  assert.deepEqual(await folding.suppressionRules(), { foldPlusTags: true, foldGmailDots: false });
});
