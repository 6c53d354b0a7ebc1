'use strict';
// Daily counts, the soft-bounce threshold and pause rules (docs/rules.md),
// fed by SendGrid webhooks for sends made through the capture transport.
const assert = require('node:assert/strict');
const crypto = require('crypto');
const { test, mailers, captureEngine, eventually } = require('./helpers');

const monday = new Date('2026-11-30T08:00:00Z');
const day = (n) => new Date(Date.UTC(2026, 10, 30 + n));
const conninfo = process.env.MAILERS_TEST_PG;
const required = process.env.MAILERS_REQUIRE_PG === '1';

// kind: 'bounce' (hard), 'blocked' (soft) or 'delivered'.
const sendgrid = (...events) => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(
    events.map(([kind, email, sendId]) => ({
      email,
      timestamp: monday.getTime() / 1000,
      sg_event_id: crypto.randomUUID(),
      reason: '550 5.1.1 no such user',
      status: '5.1.1',
      mailers_send_id: sendId,
      ...(kind === 'delivered' ? { event: kind } : { event: 'bounce', type: kind }),
    })),
  ),
});

async function ingest(engine, ...events) {
  const r = await engine.ingestWebhook('sendgrid', sendgrid(...events), { verify: false });
  assert.equal(r.httpStatus, 200, r.reason);
  return r;
}

const stores = [
  ['SQLite', {}],
  ['PostgreSQL', { sqlite: undefined, postgres: conninfo, schema: 'mailers_node_test', mode: 'open_or_create' }],
];

for (const [name, where] of stores) {
  const skip = name === 'PostgreSQL' && !conninfo && !required && 'MAILERS_TEST_PG is not set';
  // A workspace of its own on each run, on a clock at Monday 08:00 UTC.
  const open = (t) => {
    if (name === 'PostgreSQL') assert.ok(conninfo, 'MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is not set');
    const workspace = `node-${crypto.randomUUID().slice(0, 12)}`;
    return captureEngine(t, { manualClock: monday, workspace, ...where }).then((x) => ({ ...x, workspace }));
  };

  test(`${name}: counts per scope, a rule pauses once, resume with a reason, grace`, { skip }, async (t) => {
    const { engine } = await open(t);
    await engine.putPauseRule({ id: 'bounces', maxRate: 0.2, minVolume: 5, graceDays: 3 });
    assert.deepEqual(await engine.pauseRules(), [
      { id: 'bounces', scope: 'mailbox', target: '', metric: 'bounces', windowDays: 28, windowSends: 0, maxRate: 0.2, minVolume: 5, graceDays: 3 },
    ]);
    const sent = [];
    for (let i = 0; i < 5; i++) sent.push(await engine.send({ pool: 'out', to: `p${i}@prospect.example`, subject: 'Hi', text: 'Hello' }));
    const autoPaused = [];
    engine.on('auto_paused', (e) => autoPaused.push(e));
    await ingest(
      engine,
      ['bounce', 'p0@prospect.example', sent[0].sendId],
      ['bounce', 'p1@prospect.example', sent[1].sendId],
      ['delivered', 'p2@prospect.example', sent[2].sendId],
    );
    await eventually(() => autoPaused.length > 0);
    assert.equal(autoPaused.length, 1);
    assert.equal(autoPaused[0].mailbox, 'rep1');
    assert.match(autoPaused[0].detail, /bounces/);
    assert.equal(await engine.isPaused({ scope: 'mailbox', id: 'rep1' }), true);
    assert.deepEqual((await engine.pauses()).map((p) => [p.id, p.actor]), [['rep1', 'rule:bounces']]);

    for (const [scope, id] of [['mailbox', 'rep1'], ['pool', 'out'], ['provider', 'cap'], ['workspace', '']]) {
      const days = await engine.dailyCounts({ scope, id }, { from: day(-1), to: monday });
      assert.deepEqual(days.map((d) => d.day), [day(-1), day(0)], scope);
      assert.equal(days[0].sent + days[0].bouncedHard, 0, scope);
      assert.deepEqual([days[1].sent, days[1].bouncedHard, days[1].delivered, days[1].bouncedSoft], [5, 2, 1, 0], scope);
    }

    await engine.resume({ scope: 'mailbox', id: 'rep1' }, { reason: 'list cleaned', actor: { id: 'ana' } });
    const resume = (await engine.auditLog()).at(-1);
    assert.deepEqual([resume.action, resume.actor], ['resume', 'ana']);
    assert.match(resume.after, /list cleaned/);
    assert.equal(await engine.isPaused({ scope: 'mailbox', id: 'rep1' }), false);
    engine.setTime(day(2));
    assert.deepEqual(await engine.checkPauseRules(), [], 'within the grace');
    engine.setTime(day(4));
    const fired = await engine.checkPauseRules();
    assert.equal(fired.length, 1);
    assert.deepEqual([fired[0].rule, fired[0].target, fired[0].count, fired[0].volume], ['bounces', { scope: 'mailbox', id: 'rep1' }, 2, 5]);
    assert.equal(fired[0].rate, 0.4);
    assert.deepEqual(fired[0].toDay, day(4));
    assert.equal(await engine.isPaused({ scope: 'mailbox', id: 'rep1' }), true);
    assert.equal(await engine.removePauseRule('bounces'), true);
    assert.deepEqual(await engine.pauseRules(), []);
  });

  test(`${name}: two engines share rules and counts; a bounce delivered to both fires once`, { skip }, async (t) => {
    const { engine: a, dir, workspace } = await open(t);
    const b = await mailers.Engine.open({ sqlite: `${dir}/ws.db`, actor: 'ops', manualClock: monday, workspace, ...where });
    t.after(() => b.close());
    await b.addProvider('cap', 'capture://capture');
    await a.putPauseRule({ id: 'hard', metric: 'hard_bounces', maxRate: 0.5, minVolume: 2 });
    await a.setSoftBouncePolicy({ threshold: 4 });
    assert.deepEqual((await b.pauseRules()).map((r) => r.id), ['hard']);
    assert.equal((await b.softBouncePolicy()).threshold, 4);
    const sent = [];
    for (let i = 0; i < 2; i++) sent.push(await a.send({ pool: 'out', to: `q${i}@prospect.example`, subject: 'Hi', text: 'Hello' }));
    // Delivered to both engines at once: applied, counted and fired once.
    const request = sendgrid(['bounce', 'q0@prospect.example', sent[0].sendId]);
    const results = await Promise.all([a, b].map((e) => e.ingestWebhook('sendgrid', request, { verify: false })));
    assert.deepEqual(results.map((r) => r.duplicates).sort(), [0, 1]);
    const [counted] = await b.dailyCounts({ scope: 'mailbox', id: 'rep1' }, { from: monday, to: monday });
    assert.deepEqual([counted.sent, counted.bouncedHard], [2, 1]);
    assert.equal(await a.isPaused({ scope: 'mailbox', id: 'rep1' }), true);
    assert.equal((await b.auditLog()).filter((r) => r.action === 'rule.fired').length, 1);
    assert.deepEqual([...(await a.checkPauseRules()), ...(await b.checkPauseRules())], []);
  });

  test(`${name}: soft bounces past the threshold suppress the address`, { skip }, async (t) => {
    const { engine } = await open(t);
    assert.deepEqual(await engine.softBouncePolicy(), { threshold: 0, windowDays: 14 });
    await engine.setSoftBouncePolicy({ threshold: 2, windowDays: 7 });
    assert.deepEqual(await engine.softBouncePolicy(), { threshold: 2, windowDays: 7 });
    const { sendId } = await engine.send({ pool: 'out', to: 'full@prospect.example', subject: 'Hi', text: 'Hello' });
    await ingest(engine, ['blocked', 'full@prospect.example', sendId]);
    assert.equal(await engine.isSuppressed('full@prospect.example'), false);
    await ingest(engine, ['blocked', 'full@prospect.example', sendId]);
    const entry = await engine.findSuppression('full@prospect.example');
    assert.deepEqual([entry.reason, entry.source], ['hard_bounce', 'soft-bounce-threshold']);
    const [counted] = await engine.dailyCounts({ scope: 'mailbox', id: 'rep1' }, { from: monday, to: monday });
    assert.deepEqual([counted.sent, counted.bouncedSoft], [1, 2]);
  });
}

test('bad rules, policies and ranges are refused and change nothing', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.putPauseRule(mailers.bounceRatePreset('kept'));
  const ep = await engine.putWebhookEndpoint({ id: 'ops', url: 'https://ops.example/hook', eventTypes: ['auto_paused'] });
  assert.deepEqual(ep.eventTypes, ['auto_paused']);
  const state = async () => [await engine.pauseRules(), await engine.softBouncePolicy(), (await engine.auditLog()).length];
  const before = await state();
  await assert.rejects(engine.setSoftBouncePolicy({ threshold: -1 }), TypeError);
  await assert.rejects(engine.setSoftBouncePolicy({ threshold: 2 ** 32 }), TypeError);
  await assert.rejects(engine.setSoftBouncePolicy({ threshold: 1001 }), mailers.InvalidArgumentError);
  await assert.rejects(engine.setSoftBouncePolicy({ threshold: 3, windowDays: 0 }), mailers.InvalidArgumentError);
  for (const bad of [{ id: 'x', scope: 'galaxy' }, { id: 'x', metric: 'joy' }, { id: 'x', graceDays: -1 }, { id: 'kept', minVolume: 1.5 }])
    await assert.rejects(engine.putPauseRule(bad), TypeError, JSON.stringify(bad));
  for (const bad of [{ id: 'bad id!' }, { id: 'x', maxRate: 0 }, { id: 'x', maxRate: 1.5 }, { id: 'x', windowDays: 366 }, { id: 'x', scope: 'workspace', target: 'default' }])
    await assert.rejects(engine.putPauseRule(bad), mailers.InvalidArgumentError, JSON.stringify(bad));
  await assert.rejects(engine.putPauseRule({ id: 'x', scope: 'sender_domain', target: 'not a domain' }), mailers.InvalidAddressError);
  await assert.rejects(engine.dailyCounts({ scope: 'galaxy' }, { from: monday, to: monday }), TypeError);
  await assert.rejects(engine.dailyCounts({ scope: 'mailbox', id: 'rep1' }, { from: monday }), TypeError);
  await assert.rejects(engine.dailyCounts({ scope: 'mailbox', id: 'rep1' }, { from: monday, to: day(-1) }), mailers.InvalidArgumentError);
  await assert.rejects(engine.resume({ scope: 'galaxy' }, { reason: 'no' }), TypeError);
  assert.throws(() => mailers.complaintRatePreset('c', 'galaxy'), TypeError);
  assert.equal(await engine.removePauseRule('missing'), false);
  assert.deepEqual(await state(), before);
});

test('presets match the library', () => {
  assert.deepEqual(mailers.bounceRatePreset('b'), {
    id: 'b', scope: 'mailbox', target: '', metric: 'bounces', windowDays: 28, windowSends: 0, maxRate: 0.02, minVolume: 20, graceDays: 7,
  });
  const c = mailers.complaintRatePreset('c', 'workspace');
  assert.deepEqual([c.scope, c.metric, c.maxRate, c.windowDays, c.minVolume], ['workspace', 'complaints', 0.003, 7, 1000]);
});
