'use strict';
// Campaigns through the queue, their progress and cancel; forecasts.
const assert = require('node:assert/strict');
const path = require('path');
const { test, mailers, captureEngine, eventually } = require('./helpers');

const monday9 = new Date('2026-12-07T09:00:00Z');
const content = { subject: '{{first_name|Hello}}, our Q4 news', text: 'Hi {{first_name|there}}, from {{company}}.' };

test('a campaign queues each recipient once, renders each message, reports progress and carries its id on events', async (t) => {
  const { engine } = await captureEngine(t, { queuePollIntervalMs: 20 });
  await engine.suppress('gone@example.com');
  const campaignEvents = [];
  engine.on('sent', (e) => campaignEvents.push(e));
  const info = await engine.startCampaign({
    id: 'q4-launch',
    name: 'Q4 launch',
    content,
    pool: 'out',
    recipients: [
      { to: 'ada@example.com', variables: { first_name: 'Ada', company: 'Brand' } },
      { to: 'Bob <bob@example.com>', variables: { company: 'Brand' } },
      { to: 'ADA@example.com', variables: { first_name: 'Twice', company: 'Brand' } },
      { to: 'gone@example.com', variables: { company: 'Brand' } },
    ],
  });
  assert.equal(info.id, 'q4-launch');
  assert.equal(info.name, 'Q4 launch');
  assert.equal(info.total, 3);
  assert.equal(info.suppressedAtStart, 1);
  assert.equal(info.actor, 'ops@brand.com');
  assert.equal(info.cancelled, false);
  assert.equal(info.notBefore, null);
  assert.deepEqual(info.content, { ...content, html: '' });

  let p;
  await eventually(async () => (p = await engine.campaignProgress('q4-launch')).finished, 20000);
  assert.equal(p.finished, true);
  assert.equal(p.sent, 2);
  assert.equal(p.suppressedAtStart, 1);
  assert.equal(p.remaining, 0);
  assert.equal(p.total, 3);
  const cap = engine.captured('cap');
  const ada = cap.find((m) => m.rcptTo[0] === 'ada@example.com');
  assert.equal(ada.subject, 'Ada, our Q4 news');
  assert.match(ada.text, /Hi Ada, from Brand\./);
  const bob = cap.find((m) => m.rcptTo[0] === 'bob@example.com');
  assert.equal(bob.subject, 'Hello, our Q4 news');
  assert.equal(cap.length, 2);
  await eventually(() => campaignEvents.length === 2);
  assert.deepEqual(campaignEvents.map((e) => e.campaign), ['q4-launch', 'q4-launch']);
  assert.equal(campaignEvents[0].sequence, '');

  // Started again: nobody is queued twice; another list is refused.
  const again = await engine.startCampaign({ id: 'q4-launch', name: 'Q4 launch', content, pool: 'out', recipients: [
    { to: 'ada@example.com', variables: { first_name: 'Ada', company: 'Brand' } },
    { to: 'Bob <bob@example.com>', variables: { company: 'Brand' } },
    { to: 'ADA@example.com', variables: { first_name: 'Twice', company: 'Brand' } },
    { to: 'gone@example.com', variables: { company: 'Brand' } },
  ] });
  assert.equal(again.total, 3);
  await assert.rejects(engine.startCampaign({ id: 'q4-launch', content, pool: 'out', recipients: [{ to: 'new@example.com', variables: { company: 'B' } }] }), mailers.DuplicateError);
  assert.deepEqual((await engine.campaigns()).map((c) => c.id), ['q4-launch']);
  assert.equal((await engine.campaign('q4-launch')).total, 3);
  assert.equal(await engine.campaign('nope'), null);
});

test('cancelling a paced campaign withdraws what still waits', async (t) => {
  const { engine } = await captureEngine(t, { manualClock: monday9, queuePollIntervalMs: 20 });
  await engine.upsertMailbox({ id: 'rep1', from: 'Riley <rep1@brand.com>', provider: 'cap', limits: [{ max: 1, seconds: 3600 }] });
  await engine.startCampaign({ id: 'slow', content, mailbox: 'rep1', recipients: ['a@example.com', 'b@example.com', 'c@example.com'].map((to) => ({ to, variables: { company: 'B' } })) });
  await engine.settle();
  let p = await engine.campaignProgress('slow');
  assert.equal(p.sent, 1);
  assert.equal(p.waiting, 2);
  assert.equal(p.waitingByReason.cap, 2);
  assert.ok(p.nextDue > engine.now());
  assert.equal(await engine.cancelCampaign('slow'), 2);
  p = await engine.campaignProgress('slow');
  assert.equal(p.cancelled, 2);
  assert.equal(p.cancelledCampaign, true);
  assert.equal(p.finished, true);
  assert.equal((await engine.campaign('slow')).cancelled, true);
  engine.setTime(new Date(monday9.getTime() + 5 * 3600e3));
  await engine.settle();
  assert.equal(engine.captured('cap').length, 1);
  await assert.rejects(engine.cancelCampaign('nope'), mailers.NotFoundError);
  await assert.rejects(engine.campaignProgress('nope'), mailers.NotFoundError);
});

test('campaign refusals queue nothing: template position, missing variable, bad address, unknown pool', async (t) => {
  const { engine } = await captureEngine(t);
  const base = { id: 'c1', pool: 'out', content, recipients: [{ to: 'a@example.com', variables: { company: 'B' } }] };
  const bad = await engine.startCampaign({ ...base, content: { subject: 'Hi', text: 'ok', html: '<p>\n  {{#vip}}VIP</p>' } }).catch((e) => e);
  assert.ok(bad instanceof mailers.InvalidArgumentError, `${bad.name}: ${bad.message}`);
  assert.equal(bad.templateError.part, 'html');
  assert.equal(typeof bad.templateError.line, 'number');
  const missing = await engine.startCampaign({ ...base, recipients: [{ to: 'a@example.com' }] }).catch((e) => e);
  assert.ok(missing instanceof mailers.InvalidArgumentError);
  assert.match(missing.message, /company/);
  assert.equal(missing.templateError, undefined);
  await assert.rejects(engine.startCampaign({ ...base, recipients: ['a@example.com', 'not an address'] }), (e) => e instanceof mailers.InvalidAddressError && /recipients\[1\]/.test(e.message));
  await assert.rejects(engine.startCampaign({ ...base, pool: 'nope' }), mailers.UnknownPoolError);
  await assert.rejects(engine.startCampaign({ ...base, recipients: [] }), mailers.InvalidArgumentError);
  await assert.rejects(engine.startCampaign({ ...base, recipients: 'a@example.com' }), TypeError);
  assert.deepEqual(await engine.campaigns(), []);
  assert.equal((await engine.queueCounts()).waiting, 0);
});

test('a forecast plans a small campaign under a daily cap, and changes nothing', async (t) => {
  const { engine } = await captureEngine(t, { manualClock: monday9, randomSeed: 7 });
  await engine.upsertMailbox({ id: 'rep1', from: 'rep1@brand.com', provider: 'cap', limits: [{ max: 2, seconds: 86400, kind: 'calendar' }] });
  await engine.upsertMailbox({ id: 'rep2', from: 'rep2@brand.com', provider: 'cap', limits: [{ max: 2, seconds: 86400, kind: 'calendar' }] });
  await engine.upsertPool({ id: 'out', mailboxes: ['rep1', 'rep2'] });
  const recipients = Array.from({ length: 9 }, (_, i) => ({ to: `lead${i}@example.com`, variables: { company: 'B' } }));
  const plan = await engine.forecast({ campaign: { id: 'fc', content, pool: 'out', recipients }, horizon: 7 * 86400 });
  assert.equal(plan.start.getTime(), monday9.getTime());
  assert.equal(plan.end.getTime(), monday9.getTime() + 7 * 86400e3);
  assert.equal(plan.sends.length, 9);
  assert.equal(plan.unsent.length, 0);
  assert.equal(plan.complete, true);
  // Four a day (two per mailbox): days 1 and 2 full, the ninth on day 3.
  const perDay = {};
  for (const s of plan.sends) {
    assert.ok(['rep1', 'rep2'].includes(s.mailbox));
    assert.equal(s.origin, 'campaign:fc');
    assert.equal(s.step, 0);
    assert.equal(s.existing, false);
    const key = `${s.mailbox}@${s.at.toISOString().slice(0, 10)}`;
    perDay[key] = (perDay[key] || 0) + 1;
  }
  assert.ok(Object.values(perDay).every((n) => n <= 2), JSON.stringify(perDay));
  assert.equal(plan.last.toISOString().slice(0, 10), '2026-12-09');
  assert.ok(plan.sends.some((s) => s.bound === 'cap'));
  for (let i = 1; i < plan.sends.length; i++) assert.ok(plan.sends[i].at >= plan.sends[i - 1].at);

  // A short horizon leaves some unsent, waiting for the cap.
  const short = await engine.forecast({ campaign: { id: 'fc', content, pool: 'out', recipients }, horizon: 3600 });
  assert.equal(short.sends.length, 4);
  assert.equal(short.complete, false);
  assert.ok(short.unsent.every((u) => u.waiting && u.reason === 'cap'), JSON.stringify(short.unsent));

  assert.deepEqual(await engine.campaigns(), []);
  assert.equal(engine.captured('cap').length, 0);
  await assert.rejects(engine.forecast({ sequenceId: 'nope', contacts: [{ to: 'a@example.com' }] }), mailers.NotFoundError);
  await assert.rejects(engine.forecast({ campaign: { id: 'fc', content, pool: 'out', recipients }, horizon: -1 }), TypeError);

  // Once started, `follow` forecasts what is left of it from the queue.
  await engine.startCampaign({ id: 'fc', content, pool: 'out', recipients });
  const left = await engine.forecast({ horizon: 7 * 86400, follow: 'campaign:fc' });
  const mine = left.sends.filter((s) => s.origin === 'campaign:fc');
  assert.ok(mine.length > 0 && mine.every((s) => s.existing));
  assert.equal(left.complete, true);
  assert.equal(left.unsent.length, 0);
  // The queue spreads the started campaign over each day's window, so its
  // plan may end later than the forecast made before the start.
  assert.ok(left.last.getTime() < monday9.getTime() + 7 * 86400e3);
  await assert.rejects(engine.forecast({ follow: 'campaign:fc', includeQueue: false }), mailers.InvalidArgumentError);
});

test('the same campaign started by two engines of one workspace at once sends to each recipient once', async (t) => {
  const { engine: a, dir } = await captureEngine(t, { queuePollIntervalMs: 20 });
  const b = await mailers.Engine.open({ sqlite: path.join(dir, 'ws.db'), actor: 'ops-b', queuePollIntervalMs: 20 });
  t.after(() => b.close());
  await b.addProvider('cap', 'capture://capture');
  const recipients = Array.from({ length: 20 }, (_, i) => ({ to: `lead${i}@example.com`, variables: { company: 'B' } }));
  const started = await Promise.all([a, b, a, b].map((e) => e.startCampaign({ id: 'both', content, pool: 'out', recipients })));
  assert.ok(started.every((c) => c.total === 20));
  let p;
  await eventually(async () => (p = await b.campaignProgress('both')).finished, 20000);
  assert.equal(p.sent, 20);
  const to = [...a.captured('cap'), ...b.captured('cap')].map((m) => m.rcptTo[0]);
  assert.equal(to.length, 20);
  assert.equal(new Set(to).size, 20);
  assert.deepEqual(await a.campaignProgress('both'), p);
});

test('settle() walks a campaign paced by a rolling cap to its end (due times between milliseconds)', async (t) => {
  const { engine } = await captureEngine(t, { queuePollIntervalMs: 10, manualClock: monday9 });
  await engine.upsertMailbox({ id: 'rep1', from: 'rep1@brand.com', provider: 'cap', limits: [{ max: 2, seconds: 86400 }] });
  await engine.startCampaign({ id: 'paced', content: { subject: 's', text: 't' }, pool: 'out',
                               recipients: ['a@example.com', 'b@example.com', 'c@example.com', 'd@example.com'] });
  const steps = [];
  for (let next = await engine.settle(); next; next = await engine.settle()) {
    assert.ok(next > engine.now(), 'nextDue is after the present time');
    steps.push(next);
    engine.setTime(next);
  }
  assert.ok(steps.length >= 1);
  assert.equal((await engine.campaignProgress('paced')).sent, 4);
});
