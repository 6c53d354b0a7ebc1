'use strict';
const assert = require('node:assert/strict');
const { test, mailers, captureEngine } = require('./helpers');

test('mailboxes, pools and quotas round-trip through the engine', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.upsertMailbox({
    id: 'rep2',
    from: 'Blair <blair@getbrand.com>',
    provider: 'cap',
    limits: [{ max: 40, seconds: 86400 }, { max: 8, seconds: 3600, kind: 'calendar' }],
    timeZone: 'Europe/Berlin',
    window: { startHour: 9, endHour: 17, weekdays: 0x3e },
    minGap: 180,
    jitter: 60,
    weight: 3,
    warmup: { start: 5, step: 5, target: 50, startDate: new Date('2026-11-01T00:00:00Z') },
  });
  const m = await engine.mailbox('rep2');
  assert.equal(m.from, 'Blair <blair@getbrand.com>');
  assert.deepEqual(m.limits, [
    { max: 40, seconds: 86400, kind: 'rolling' },
    { max: 8, seconds: 3600, kind: 'calendar' },
  ]);
  assert.equal(m.timeZone, 'Europe/Berlin');
  assert.deepEqual(m.window, { startHour: 9, endHour: 17, weekdays: 0x3e });
  assert.equal(m.weight, 3);
  assert.equal(m.warmup.startDate.toISOString(), '2026-11-01T00:00:00.000Z');
  assert.equal((await engine.mailboxes()).length, 2);
  assert.equal(await engine.mailbox('nobody'), null);

  await engine.upsertPool({ id: 'sales', mailboxes: ['rep1', 'rep2'], policy: { kind: 'weighted', maxAttempts: 2, stickySender: true } });
  assert.deepEqual(await engine.pool('sales'), {
    id: 'sales',
    mailboxes: ['rep1', 'rep2'],
    policy: { kind: 'weighted', maxAttempts: 2, stickySender: true },
  });
  await engine.removePool('sales');
  assert.equal(await engine.pool('sales'), null);

  await engine.setQuota({ scope: 'recipient_domain', key: 'gmail.com', limits: [{ max: 20, seconds: 3600 }] });
  assert.deepEqual((await engine.quotas()).map((q) => [q.scope, q.key, q.limits[0].max]), [['recipient_domain', 'gmail.com', 20]]);
  await engine.removeQuota('recipient_domain', 'gmail.com');
  assert.equal((await engine.quotas()).length, 0);

  const st = await engine.status('rep2');
  assert.equal(st.id, 'rep2');
  assert.equal(st.health, 'closed');

  await engine.retireMailbox('rep2');
  assert.equal((await engine.mailbox('rep2')).state, 'retired');
});

test('a preset applies as a ceiling', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.upsertMailbox({ id: 'g', from: 'g@brand.com', provider: 'cap', limits: [{ max: 40 }], preset: 'google_workspace' });
  const m = await engine.mailbox('g');
  assert.equal(m.limits.find((l) => l.seconds === 86400).max, 40);
  assert.equal(m.maxRecipientsPerMessage, 100);
});

test('bad input is refused with a clear error and changes nothing', async (t) => {
  const { engine } = await captureEngine(t);
  const before = (await engine.auditLog()).length;
  await assert.rejects(engine.upsertMailbox({ id: 'x', from: 'not an address', provider: 'cap' }), mailers.InvalidAddressError);
  await assert.rejects(engine.upsertMailbox({ id: 'x', from: 'x@brand.com', provider: 'cap', timeZone: 'Mars/Olympus' }), mailers.UnknownTimeZoneError);
  await assert.rejects(engine.upsertMailbox({ id: 'x', from: 'x@brand.com', provider: 'cap', weight: 0 }), mailers.InvalidArgumentError);
  await assert.rejects(engine.upsertMailbox({ id: 'x', from: 'x@brand.com', provider: 'cap', limits: [{ max: 1, kind: 'sometimes' }] }), /limit kind must be one of: rolling, calendar/);
  await assert.rejects(engine.upsertMailbox({ id: 'x', from: 42 }), TypeError);
  await assert.rejects(engine.upsertPool({ id: 'p', mailboxes: 'rep1' }), TypeError);
  await assert.rejects(engine.removePool('nope'), mailers.UnknownPoolError);
  await assert.rejects(engine.addProvider('bad', 'carrier-pigeon://coop'), (e) => e instanceof mailers.InvalidArgumentError && /scheme/.test(e.message));
  assert.equal((await engine.auditLog()).length, before);
  assert.equal((await engine.mailboxes()).length, 1);
});

test('provider secrets by env: reference are resolved, and never shown in the audit log', async (t) => {
  const { engine } = await captureEngine(t);
  process.env.MAILERS_NODE_TEST_KEY = 'SG.very-secret-key';
  await engine.addProvider('sg', 'sendgrid+api://env:MAILERS_NODE_TEST_KEY@default');
  await assert.rejects(engine.addProvider('sg2', 'sendgrid+api://env:MAILERS_NODE_TEST_MISSING@default'), mailers.InvalidArgumentError);
  const log = JSON.stringify(await engine.auditLog());
  assert.ok(!log.includes('very-secret-key'));
});

test('opening: modes, a missing store, a store that exists, a corrupt file', async (t) => {
  const { tempDir } = require('./helpers');
  const fs = require('fs');
  const path = require('path');
  const dir = tempDir(t);
  const file = path.join(dir, 'ws.db');
  await assert.rejects(mailers.Engine.open({ sqlite: file, mode: 'existing' }), mailers.StoreMissingError);
  const e = await mailers.Engine.open({ sqlite: file, mode: 'create' });
  await e.close();
  await assert.rejects(mailers.Engine.open({ sqlite: file, mode: 'create' }), mailers.StoreExistsError);
  const bad = path.join(dir, 'bad.db');
  fs.writeFileSync(bad, 'this is not a database, not even close to one. '.repeat(200));
  await assert.rejects(mailers.Engine.open({ sqlite: bad }), mailers.StoreCorruptError);
  await assert.rejects(mailers.Engine.open({}), TypeError);
  await assert.rejects(mailers.Engine.open({ sqlite: file, mode: 'sometimes' }), TypeError);
  assert.throws(() => new mailers.Engine({ sqlite: file }), TypeError);
});
