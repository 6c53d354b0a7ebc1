'use strict';
const assert = require('node:assert/strict');
const { test, mailers, captureEngine, message, eventually } = require('./helpers');

test('a send through the capture transport resolves with the ledger result', async (t) => {
  const { engine } = await captureEngine(t);
  const r = await engine.send(message('Ada <ada@example.com>', { cc: ['bob@example.com'], headers: { 'X-Campaign': 'q4' } }));
  assert.equal(r.state, 'accepted');
  assert.equal(r.mailbox, 'rep1');
  assert.equal(r.provider, 'cap');
  assert.match(r.providerMessageId, /^capture-\d+$/);
  assert.equal(r.duplicate, false);
  const [m] = engine.captured('cap');
  assert.equal(m.mailFrom, 'rep1@brand.com');
  assert.deepEqual(m.rcptTo, ['ada@example.com', 'bob@example.com']);
  assert.equal(m.subject, 'Hello');
  assert.equal(m.messageId, r.messageId);
  assert.deepEqual(m.headers.find((h) => h.name === 'X-Campaign'), { name: 'X-Campaign', value: 'q4' });
});

test('the same idempotency key twice is one send, and the second says so', async (t) => {
  const { engine } = await captureEngine(t);
  const a = await engine.send(message('ada@example.com', { idempotencyKey: 'k1' }));
  // As in C++: the second call completes with errc::duplicate and the
  // first send's result.
  const err = await engine.send(message('ada@example.com', { idempotencyKey: 'k1' })).catch((e) => e);
  assert.ok(err instanceof mailers.DuplicateError);
  assert.equal(err.result.duplicate, true);
  assert.equal(err.result.sendId, a.sendId);
  assert.equal(engine.captured('cap').length, 1);
});

test('1000 sends in flight at once from one event loop', async (t) => {
  const { engine } = await captureEngine(t);
  const results = await Promise.all(
    Array.from({ length: 1000 }, (_, i) => engine.send(message(`lead${i}@example.com`, { idempotencyKey: `c${i}` }))),
  );
  assert.equal(new Set(results.map((r) => r.sendId)).size, 1000);
  assert.ok(results.every((r) => r.state === 'accepted'));
  assert.equal(engine.captured('cap').length, 1000);
  assert.equal((await engine.stats()).accepted, 1000);
  assert.equal(engine.pending, 0);
});

test('suppression: check, add, remove, domains, CSV import and export', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.suppress('No.Thanks@Example.com', { reason: 'unsubscribe', source: 'crm' });
  assert.equal(await engine.isSuppressed('no.thanks@example.com'), true);
  const entry = await engine.findSuppression('no.thanks@example.com');
  assert.equal(entry.reason, 'unsubscribe');
  assert.equal(entry.source, 'crm');
  await assert.rejects(engine.send(message('no.thanks@example.com')), (e) => e instanceof mailers.SuppressedError && e.code === 'suppressed');
  assert.equal(engine.captured('cap').length, 0);

  await engine.suppress('blocked.example', { kind: 'domain', reason: 'legal' });
  assert.equal(await engine.isSuppressed('anyone@sub.blocked.example'), true);
  assert.equal(await engine.isSuppressed('anyone@notblocked.example'), false);

  assert.equal(await engine.unsuppress('no.thanks@example.com'), true);
  assert.equal(await engine.unsuppress('no.thanks@example.com'), false);
  await engine.send(message('no.thanks@example.com'));

  const n = await engine.importSuppressions('value,kind,reason,source,created_at\na@x.example,address,hard_bounce,esp,\nx2.example,domain,complaint,esp,\n');
  assert.equal(n, 2);
  assert.equal(await engine.suppressionCount(), 3);
  await assert.rejects(engine.importSuppressions('ok@x.example,address,manual,,\nnot an address,address,manual,,\n'), (e) => e instanceof mailers.InvalidCsvError && /line 2/.test(e.message));
  assert.equal(await engine.suppressionCount(), 3);
  const csv = await engine.exportSuppressions();
  assert.match(csv, /^value,kind,reason,source,created_at/);
  assert.match(csv, /a@x\.example,address,hard_bounce/);
  assert.match(csv, /x2\.example,domain,complaint/);
  assert.equal((await engine.verifySuppressions()).ok, true);
  await assert.rejects(engine.isSuppressed('not an address'), mailers.InvalidAddressError);
});

test('pause and resume: nothing is handed off while paused', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.pause({ scope: 'pool', id: 'out' }, { reason: 'incident' });
  assert.equal(await engine.isPaused({ scope: 'pool', id: 'out' }), true);
  const [p] = await engine.pauses();
  assert.equal(p.reason, 'incident');
  assert.equal(p.actor, 'ops@brand.com');
  await assert.rejects(engine.send(message('ada@example.com')), mailers.PausedError);
  await engine.resume({ scope: 'pool', id: 'out' });
  await engine.send(message('ada@example.com'));

  await engine.pause();
  assert.equal(await engine.isPaused(), true);
  await assert.rejects(engine.send(message('bob@example.com')), mailers.PausedError);
  await engine.resume();
  assert.equal(engine.captured('cap').length, 1);
});

test('events: an EventEmitter and an async iterator see every send, in order per send', async (t) => {
  const { engine } = await captureEngine(t);
  const seen = [];
  engine.on('event', (e) => seen.push(e));
  const sentTyped = [];
  engine.on('sent', (e) => sentTyped.push(e.recipient));
  const iter = engine.events();
  await Promise.resolve();
  const r = await engine.send(message('ada@example.com'));
  await assert.rejects(engine.send(message('bad\r\n@example.com')));
  await engine.suppress('no@example.com');
  await assert.rejects(engine.send(message('no@example.com')), mailers.SuppressedError);
  await engine.flush();
  await eventually(() => ['sent', 'suppressed'].every((t) => seen.some((e) => e.type === t)));
  const types = seen.map((e) => e.type);
  assert.ok(types.includes('sent'), types.join());
  assert.ok(types.includes('suppressed'), types.join());
  const sent = seen.find((e) => e.type === 'sent');
  assert.equal(sent.sendId, r.sendId);
  assert.equal(sent.recipient, 'ada@example.com');
  assert.ok(sent.at instanceof Date);
  assert.deepEqual(sentTyped, ['ada@example.com']);

  const got = [];
  for await (const e of iter) {
    got.push(e.type);
    if (got.length === seen.length) break;
  }
  assert.deepEqual(got, types);
});

test('a listener added just before a send gets its events, however late the event loop runs', async (t) => {
  const { engine } = await captureEngine(t);
  const sent = [];
  engine.on('sent', (e) => sent.push(e.recipient));
  const sends = Array.from({ length: 20 }, (_, i) => engine.send(message(`now${i}@example.com`)));
  // The JS thread held up (a loaded machine, a long synchronous task)
  // while the engine completes the sends: their events must not be lost.
  const until = Date.now() + 200;
  while (Date.now() < until);
  await Promise.all(sends);
  await eventually(() => sent.length === 20);
  assert.equal(sent.length, 20, sent.join());
});

test('a listener that throws is reported and never takes the process down', async (t) => {
  const { engine } = await captureEngine(t);
  const errors = [];
  engine.on('error', (e) => errors.push(e));
  engine.on('event', () => {
    throw new Error('listener bug');
  });
  const after = [];
  engine.on('event', (e) => after.push(e.type));
  await engine.send(message('ada@example.com'));
  await engine.send(message('bob@example.com'));
  await eventually(() => errors.length >= 2 && after.filter((x) => x === 'sent').length === 2);
  assert.ok(errors.length >= 2);
  assert.equal(errors[0].message, 'listener bug');
  assert.ok(after.filter((x) => x === 'sent').length === 2, 'the other listeners still got every event');
});

test('without an error listener a throwing listener becomes a process warning', async (t) => {
  const { engine } = await captureEngine(t);
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  engine.on('sent', () => {
    throw new Error('oops');
  });
  await engine.send(message('ada@example.com'));
  await eventually(() => warnings.some((w) => w.name === 'MailersListenerError'));
  assert.ok(warnings.some((w) => w.name === 'MailersListenerError' && /oops/.test(w.message)));
});

test('enqueue: the durable queue hands the send off', async (t) => {
  const { engine } = await captureEngine(t, { queuePollIntervalMs: 50 });
  const id = await engine.enqueue(message('ada@example.com', { idempotencyKey: 'q1' }), { origin: 'api' });
  assert.equal(typeof id, 'number');
  assert.equal(await engine.enqueue(message('ada@example.com', { idempotencyKey: 'q1' })), id);
  const done = await engine.enqueueAndWait(message('bob@example.com'));
  assert.equal(done.state, 'done');
  assert.ok(done.sendId);
  const later = await engine.enqueue(message('cy@example.com'), { notBefore: Date.now() + 3600e3 });
  assert.equal(await engine.cancelQueued(later), true);
  const counts = await engine.queueCounts();
  assert.equal(counts.cancelled, 1);
  assert.ok((await engine.queued({ state: 'cancelled' })).some((q) => q.id === later));
  await assert.rejects(engine.enqueue(message('x@example.com', { pool: 'nope' })), mailers.UnknownPoolError);
});

test('the audit log records every change and verifies', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.suppress('a@example.com');
  const log = await engine.auditLog();
  assert.ok(log.length >= 4);
  assert.ok(log.some((r) => r.action === 'mailbox.upsert' && r.actor === 'ops@brand.com'));
  assert.equal(log[0].seq, 1);
  const cp = await engine.auditCheckpoint();
  assert.equal(cp.seq, log.at(-1).seq);
  assert.deepEqual(await engine.verifyAudit(), { ok: true, badSeq: null });
  assert.deepEqual(await engine.verifyAudit(cp), { ok: true, badSeq: null });
  assert.deepEqual(await engine.verifyAudit({ seq: cp.seq + 5, hash: 'x' }), { ok: false, badSeq: cp.seq + 1 });
  assert.equal((await engine.auditLog(log.length)).length, 1);
});

test('listeners may call back into the engine: JS never runs under an engine lock', async (t) => {
  const { engine } = await captureEngine(t);
  const followUps = [];
  engine.on('sent', (e) => {
    if (!e.recipient.startsWith('first')) return;
    // Each call from inside the listener starts engine work at once.
    followUps.push(engine.suppress(e.recipient));
    followUps.push(engine.send(message(`second-${e.recipient}`)));
    followUps.push(engine.stats());
  });
  await Promise.all(Array.from({ length: 20 }, (_, i) => engine.send(message(`first${i}@example.com`))));
  await eventually(() => followUps.length === 60);
  assert.equal(followUps.length, 60, 'a follow-up for each of the 20 sent events');
  await Promise.all(followUps);
  assert.equal(await engine.suppressionCount(), 20);
  assert.equal(engine.captured('cap').length, 40);
});
