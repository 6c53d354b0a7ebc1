'use strict';
// Sequences: definitions, enrollments driven through their steps on a
// manual clock against the capture transport, stop rules, and refusals.
const assert = require('node:assert/strict');
const path = require('path');
const { test, mailers, captureEngine, eventually } = require('./helpers');

const monday9 = new Date('2026-12-07T09:00:00Z');
const day = 86400e3;

// rep1 (in pool "out") and rep2 and founder, on a manual clock; the queue
// looks for due work every 20 ms.
async function sequenceEngine(t) {
  const { engine } = await captureEngine(t, { manualClock: monday9, queuePollIntervalMs: 20 });
  await engine.upsertMailbox({ id: 'rep2', from: 'Blair <rep2@brand.com>', provider: 'cap' });
  await engine.upsertMailbox({ id: 'founder', from: 'Fran <founder@brand.com>', provider: 'cap' });
  return engine;
}

const outreach = {
  id: 'outreach',
  name: 'Q4 outreach',
  steps: [
    {
      delay: { in: 'hours', amount: 0 },
      content: { subject: 'Quick question, {{first_name}}', text: 'Hi {{first_name}}, does {{company|your team}} hire?' },
      sender: { kind: 'owner', fallbackPool: 'out' },
    },
    {
      delay: { in: 'days', amount: 2 },
      content: { text: 'Bumping this, {{first_name}}.' },
      sender: { kind: 'previous_step' },
      threading: 'reply',
    },
    {
      delay: { in: 'hours', amount: 24 },
      content: { subject: 'A note from our founder', text: 'Fran here. {{company|}}' },
      sender: { kind: 'mailbox', id: 'founder' },
    },
  ],
};

test('a sequence round-trips, and an enrollment goes through its steps: senders, threading, rendered text', async (t) => {
  const engine = await sequenceEngine(t);
  await engine.upsertSequence(outreach);
  const stored = await engine.sequence('outreach');
  assert.equal(stored.name, 'Q4 outreach');
  assert.deepEqual(stored.steps[1].delay, { in: 'days', amount: 2 });
  assert.deepEqual(stored.steps[0].sender, { kind: 'owner', id: '', fallbackPool: 'out' });
  assert.equal(stored.steps[1].threading, 'reply');
  assert.equal(stored.onEnrolledTwice, 'refuse');
  assert.equal(stored.replyStops, 'every_sequence');
  assert.deepEqual((await engine.sequences()).map((s) => s.id), ['outreach']);
  assert.equal(await engine.sequence('nope'), null);

  const sent = [];
  engine.on('sent', (e) => sent.push(e));
  const en = await engine.enroll('outreach', 'Ada Lovelace <Ada@Acme.example>', {
    variables: { first_name: 'Ada', company: 'Acme' },
    owner: 'rep2',
  });
  assert.equal(en.sequenceId, 'outreach');
  assert.equal(en.address, 'ada@acme.example');
  assert.deepEqual(en.variables, { first_name: 'Ada', company: 'Acme' });
  assert.equal(en.owner, 'rep2');
  assert.equal(en.actor, 'ops@brand.com');
  // Read back after the commit: the queue thread may have sent step 1 already.
  assert.equal(en.state, 'active');

  // Step 1, due at once: from the owner.
  let next = await engine.settle();
  let cap = engine.captured('cap');
  assert.equal(cap.length, 1);
  assert.equal(cap[0].mailbox, 'rep2');
  assert.equal(cap[0].from, 'Blair <rep2@brand.com>');
  assert.equal(cap[0].subject, 'Quick question, Ada');
  assert.match(cap[0].text, /Hi Ada, does Acme hire\?/);
  assert.deepEqual(cap[0].rcptTo, ['ada@acme.example']);
  // Two days later, the same time of day in rep2's zone (UTC).
  assert.equal(next.getTime(), monday9.getTime() + 2 * day);
  let e1 = await engine.enrollment(en.id);
  assert.equal(e1.step, 1);
  assert.equal(e1.prevMailbox, 'rep2');
  assert.equal(e1.prevMessageId, cap[0].messageId);
  await eventually(() => sent.length === 1);
  assert.equal(sent[0].sequence, 'outreach');
  assert.equal(sent[0].enrollment, en.id);
  assert.equal(sent[0].step, 1);
  assert.equal(sent[0].campaign, '');

  // Nothing moves until the clock does.
  engine.setTime(new Date(next.getTime() - 60e3));
  await engine.settle();
  assert.equal(engine.captured('cap').length, 1);

  // Step 2: a reply in step 1's thread, from the same mailbox.
  engine.setTime(next);
  next = await engine.settle();
  cap = engine.captured('cap');
  assert.equal(cap.length, 2);
  assert.equal(cap[1].mailbox, 'rep2');
  assert.equal(cap[1].subject, 'Re: Quick question, Ada');
  assert.equal(cap[1].text.trim(), 'Bumping this, Ada.');
  assert.equal(cap[1].inReplyTo, cap[0].messageId);
  assert.deepEqual(cap[1].references, [cap[0].messageId]);
  assert.equal(next.getTime(), monday9.getTime() + 3 * day);

  // Step 3: a new thread from the founder.
  engine.setTime(next);
  next = await engine.settle();
  cap = engine.captured('cap');
  assert.equal(cap.length, 3);
  assert.equal(cap[2].mailbox, 'founder');
  assert.equal(cap[2].subject, 'A note from our founder');
  assert.equal(cap[2].inReplyTo, '');
  assert.deepEqual(cap[2].references, []);
  assert.equal(next, null);
  e1 = await engine.enrollment(en.id);
  assert.equal(e1.state, 'completed');
  assert.equal(e1.step, 3);
  await eventually(() => sent.length === 3);
  assert.deepEqual(sent.map((e) => e.step), [1, 2, 3]);
});

// A Gmail-style delivery status notification (RFC 3464) for `rcpt`.
const bounceMessage = (rcpt, messageId) =>
  [
    'From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>',
    'Subject: Delivery Status Notification (Failure)',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    `Your message wasn't delivered to ${rcpt} because the address couldn't be found.`,
    '',
    '--b',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; googlemail.com',
    '',
    `Final-Recipient: rfc822; ${rcpt}`,
    'Action: failed',
    'Status: 5.1.1',
    'Diagnostic-Code: smtp; 550 5.1.1 The email account that you tried to reach does not exist.',
    '',
    '--b',
    'Content-Type: text/rfc822-headers',
    '',
    `Message-ID: <${messageId}>`,
    `To: ${rcpt}`,
    '',
    '--b--',
    '',
  ].join('\r\n');

test('replies, unsubscribes, bounces, goals, pauses and manual stops end or hold enrollments', async (t) => {
  const engine = await sequenceEngine(t);
  await engine.upsertSequence(outreach);
  const vars = { variables: { first_name: 'X' }, owner: 'rep1' };
  const ids = {};
  // The sequence paused while they are enrolled, so that eve's enrollment
  // is paused before its first step can go.
  await engine.pauseSequence('outreach');
  for (const who of ['bob', 'cy', 'dee', 'eve', 'fay', 'gus', 'hal']) ids[who] = (await engine.enroll('outreach', `${who}@example.com`, vars)).id;
  assert.equal(await engine.pauseEnrollment(ids.eve), true);
  assert.equal(await engine.pauseEnrollment(ids.eve), false);
  await engine.resumeSequence('outreach');
  // Enrollments met while their sequence was paused are looked at again
  // after queue_recheck (60 s).
  engine.setTime(new Date(monday9.getTime() + 61e3));
  await engine.settle();
  const first = engine.captured('cap');
  assert.deepEqual(first.map((m) => m.rcptTo[0]).sort(), ['bob@example.com', 'cy@example.com', 'dee@example.com', 'fay@example.com', 'gus@example.com', 'hal@example.com']);

  // A reply by the Message-ID of bob's step, by dee's address; cy unsubscribes.
  const bobMsg = first.find((m) => m.rcptTo[0] === 'bob@example.com');
  assert.deepEqual(await engine.recordReply(`<${bobMsg.messageId}>`), [ids.bob]);
  assert.deepEqual(await engine.recordReply('Dee@Example.com'), [ids.dee]);
  await engine.suppress('cy@example.com', { reason: 'unsubscribe' });
  assert.deepEqual(await engine.recordGoal('fay@example.com', 'outreach'), [ids.fay]);
  assert.equal(await engine.stopEnrollment(ids.gus, { reason: 'asked by sales' }), true);
  assert.equal(await engine.stopEnrollment(ids.gus), false);
  // A bounce message for hal's step, fetched from the mailbox: a hard bounce.
  const halMsg = first.find((m) => m.rcptTo[0] === 'hal@example.com');
  const report = await engine.ingestDeliveryReport(bounceMessage('hal@example.com', halMsg.messageId));
  assert.equal(report.recognised, true);
  assert.equal(report.originalMessageId, halMsg.messageId);
  assert.equal(report.suppressed, 1);
  assert.equal(report.events[0].type, 'bounced');
  assert.equal((await engine.ingestDeliveryReport('Subject: hello\r\n\r\nnot a bounce\r\n')).recognised, false);
  await assert.rejects(engine.ingestDeliveryReport(42), TypeError);

  const state = async (id) => {
    const e = await engine.enrollment(id);
    return `${e.state}/${e.stopReason}`;
  };
  assert.equal(await state(ids.bob), 'stopped/replied');
  assert.equal(await state(ids.dee), 'stopped/replied');
  assert.equal(await state(ids.cy), 'stopped/unsubscribed');
  assert.equal(await state(ids.fay), 'stopped/goal');
  assert.equal(await state(ids.gus), 'stopped/manual');
  assert.equal(await state(ids.hal), 'stopped/bounced');
  assert.equal(await state(ids.eve), 'paused/none');
  assert.deepEqual((await engine.enrollments({ state: 'stopped' })).map((e) => e.id), [ids.bob, ids.cy, ids.dee, ids.fay, ids.gus, ids.hal]);
  assert.deepEqual((await engine.enrollments({ address: 'EVE@example.com' })).map((e) => e.id), [ids.eve]);
  assert.equal((await engine.enrollments({ sequenceId: 'outreach', limit: 2 })).length, 2);
  assert.deepEqual((await engine.enrollments({ afterId: ids.fay })).map((e) => e.id), [ids.gus, ids.hal]);

  // A paused sequence holds a resumed enrollment's step until it resumes.
  await engine.pauseSequence('outreach', { reason: 'copy review' });
  assert.equal(await engine.isSequencePaused('outreach'), true);
  assert.equal(await engine.resumeEnrollment(ids.eve), true);
  engine.setTime(new Date(monday9.getTime() + 3600e3));
  await new Promise((res) => setTimeout(res, 200));
  assert.equal(engine.captured('cap').length, 6);
  await engine.resumeSequence('outreach');
  assert.equal(await engine.isSequencePaused('outreach'), false);
  engine.setTime(new Date(monday9.getTime() + 3600e3 + 61e3));
  await engine.settle();
  const all = engine.captured('cap');
  assert.equal(all.length, 7);
  assert.equal(all[6].rcptTo[0], 'eve@example.com');

  // Stopped enrollments send nothing more.
  engine.setTime(new Date(monday9.getTime() + 10 * day));
  await engine.settle();
  engine.setTime(new Date(monday9.getTime() + 20 * day));
  await engine.settle();
  const late = engine.captured('cap').slice(7).map((m) => m.rcptTo[0]);
  assert.deepEqual([...new Set(late)], ['eve@example.com']);
  assert.equal(await state(ids.eve), 'completed/none');
});

test('refusals: a bad template with line and column, unknown names, missing variables, duplicates; nothing changes', async (t) => {
  const engine = await sequenceEngine(t);
  const broken = structuredClone(outreach);
  broken.steps[1].content.text = 'Bumping this,\n{{first_name';
  const err = await engine.upsertSequence(broken).catch((e) => e);
  assert.ok(err instanceof mailers.InvalidArgumentError, `${err.name}: ${err.message}`);
  assert.match(err.message, /step 2/);
  assert.deepEqual(
    { step: err.templateError.step, field: err.templateError.field, part: err.templateError.part, line: err.templateError.line },
    { step: 2, field: 'content', part: 'text', line: 2 },
  );
  assert.equal(typeof err.templateError.column, 'number');
  assert.ok(err.templateError.column >= 1);

  const noPool = structuredClone(outreach);
  noPool.steps[0].sender = { kind: 'pool', id: 'nowhere' };
  await assert.rejects(engine.upsertSequence(noPool), mailers.UnknownPoolError);
  await assert.rejects(engine.upsertSequence({ ...outreach, id: 'bad id!' }), (e) => e instanceof mailers.InvalidArgumentError && e.templateError.field === 'id');
  await assert.rejects(engine.upsertSequence({ ...outreach, steps: [{ ...outreach.steps[0], delay: { in: 'weeks', amount: 1 } }] }), /delay\.in must be one of: hours, days, business_days/);
  await assert.rejects(engine.upsertSequence({ ...outreach, steps: 'one' }), TypeError);
  assert.deepEqual(await engine.sequences(), []);

  await engine.upsertSequence(outreach);
  const missing = await engine.enroll('outreach', 'ada@example.com', { variables: { company: 'Acme' } }).catch((e) => e);
  assert.ok(missing instanceof mailers.InvalidArgumentError, missing.name);
  assert.match(missing.message, /first_name/);
  await assert.rejects(engine.enroll('nope', 'ada@example.com', { variables: { first_name: 'A' } }), mailers.NotFoundError);
  await assert.rejects(engine.enroll('outreach', 'not an address', { variables: { first_name: 'A' } }), mailers.InvalidAddressError);
  await assert.rejects(engine.enroll('outreach', 'ada@example.com', { variables: { first_name: 'A' }, owner: 'ghost' }), mailers.UnknownMailboxError);
  await assert.rejects(engine.enroll('outreach', 'ada@example.com', { variables: { first_name: 42 } }), TypeError);
  await engine.suppress('no@example.com');
  await assert.rejects(engine.enroll('outreach', 'no@example.com', { variables: { first_name: 'N' } }), mailers.SuppressedError);
  assert.deepEqual(await engine.enrollments(), []);

  const first = await engine.enroll('outreach', 'ada@example.com', { variables: { first_name: 'Ada' } });
  await assert.rejects(engine.enroll('outreach', 'ada@example.com', { variables: { first_name: 'Other' } }), mailers.DuplicateError);
  const merged = await engine.enroll('outreach', 'ada@example.com', { variables: { first_name: 'Ada', company: 'Acme' }, onEnrolledTwice: 'merge' });
  assert.equal(merged.id, first.id);
  assert.deepEqual(merged.variables, { first_name: 'Ada', company: 'Acme' });

  assert.equal(await engine.enrollment(424242), null);
  for (const call of ['pauseEnrollment', 'resumeEnrollment', 'stopEnrollment']) await assert.rejects(engine[call](424242), mailers.NotFoundError, call);
  // Only an enrollment held by a step whose send ended unknown can be resolved.
  assert.deepEqual(await engine.enrollments({ state: 'unresolved' }), []);
  assert.equal(await engine.resolveUnknownStep(first.id, 'sent'), false);
  await assert.rejects(engine.resolveUnknownStep(424242, 'not_sent'), mailers.NotFoundError);
  await assert.rejects(engine.resolveUnknownStep(first.id, 'maybe'), TypeError);
  assert.equal((await engine.enrollment(first.id)).state, 'active');
  await assert.rejects(engine.enrollment('1'), TypeError);
  await assert.rejects(engine.resumeSequence('outreach'), mailers.NotFoundError);
  await assert.rejects(engine.removeSequence('nope'), mailers.NotFoundError);
  await engine.removeSequence('outreach');
  assert.equal(await engine.sequence('outreach'), null);
});

test('a forecast of enrolling two contacts plans every step on the sequence calendar, and enrolls nobody', async (t) => {
  const engine = await sequenceEngine(t);
  await engine.upsertSequence(outreach);
  const plan = await engine.forecast({
    sequenceId: 'outreach',
    contacts: [
      { to: 'ada@example.com', variables: { first_name: 'Ada' }, owner: 'rep2' },
      { to: 'bob@example.com', variables: { first_name: 'Bob' } },
    ],
    horizon: 14 * 86400,
  });
  assert.equal(plan.complete, true);
  assert.equal(plan.sends.length, 6);
  const of = (who) => plan.sends.filter((s) => s.recipient === who);
  assert.deepEqual(of('ada@example.com').map((s) => [s.step, s.mailbox]), [[1, 'rep2'], [2, 'rep2'], [3, 'founder']]);
  // No owner: the first step falls back to pool "out" (rep1), the second follows it.
  assert.deepEqual(of('bob@example.com').map((s) => [s.step, s.mailbox]), [[1, 'rep1'], [2, 'rep1'], [3, 'founder']]);
  const ada = of('ada@example.com');
  assert.equal(ada[0].at.getTime(), monday9.getTime());
  assert.equal(ada[1].at.getTime(), monday9.getTime() + 2 * day);
  assert.equal(ada[2].at.getTime(), monday9.getTime() + 3 * day);
  assert.ok(ada.every((s) => s.origin.startsWith('sequence:outreach/')));
  assert.equal(plan.last.getTime(), monday9.getTime() + 3 * day);
  assert.deepEqual(await engine.enrollments(), []);
  assert.equal(engine.captured('cap').length, 0);
  await assert.rejects(engine.forecast({ sequenceId: 'outreach', contacts: [{ to: 'cy@example.com' }] }), mailers.InvalidArgumentError);
});

test('two engines on one workspace: the same contact enrolled by both at once is enrolled and sent to once', async (t) => {
  const { engine: a, dir } = await captureEngine(t, { queuePollIntervalMs: 20 });
  const b = await mailers.Engine.open({ sqlite: path.join(dir, 'ws.db'), actor: 'ops-b', queuePollIntervalMs: 20 });
  t.after(() => b.close());
  await b.addProvider('cap', 'capture://capture');
  await a.upsertSequence({ ...outreach, steps: [{ ...outreach.steps[0], sender: { kind: 'pool', id: 'out' } }] });
    const tries = await Promise.allSettled(
    Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).enroll('outreach', 'ada@example.com', { variables: { first_name: 'Ada' } })),
  );
  const ok = tries.filter((r) => r.status === 'fulfilled');
  assert.equal(ok.length, 1, JSON.stringify(tries.map((r) => r.status)));
  assert.ok(tries.filter((r) => r.status === 'rejected').every((r) => r.reason instanceof mailers.DuplicateError));
  const id = ok[0].value.id;
  await eventually(async () => (await b.enrollment(id)).state === 'completed', 20000);
  assert.equal((await a.enrollment(id)).state, 'completed');
  assert.equal(a.captured('cap').length + b.captured('cap').length, 1);
  assert.deepEqual((await b.enrollments()).map((e) => e.id), [id]);
});
