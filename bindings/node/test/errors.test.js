'use strict';
// Every error class: each mailers::errc and mailers::failure value has one,
// and each that a test can bring about is brought about.
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { test, mailers, captureEngine, message, tempDir, sourceDir, smtpServer } = require('./helpers');
const errors = require('../lib/errors');

const enumerators = (name) => {
  const hpp = fs.readFileSync(path.join(sourceDir, 'include', 'mailers', 'error.hpp'), 'utf8');
  const body = new RegExp(`enum class ${name} \\{([\\s\\S]*?)\\};`).exec(hpp)[1];
  return body
    .split('\n')
    .map((l) => l.replace(/\/\/.*$/, '').trim())
    .join(' ')
    .split(',')
    .map((s) => s.trim().split(/[\s=]/)[0])
    .filter((s) => /^[a-z_]+$/.test(s) && s !== 'ok');
};

test('every errc and every failure class of error.hpp has its Error subclass', () => {
  for (const code of enumerators('errc')) {
    const name = errors.libraryErrors[code];
    assert.ok(name, `errc::${code} has no class`);
    const e = errors.toError({ category: 'mailers', code, failure: null, message: code, retryAt: null, diag: {} });
    assert.ok(e instanceof mailers[name] && e instanceof mailers.MailersError && e instanceof Error, code);
    assert.equal(e.code, code);
    assert.equal(e.failure, null);
    assert.equal(e.name, name);
  }
  for (const failure of enumerators('failure')) {
    const name = errors.transportErrors[failure];
    assert.ok(name, `failure::${failure} has no class`);
    const e = errors.toError({ category: 'transport', code: 'x', failure, message: failure, retryAt: null, diag: {} });
    assert.ok(e instanceof mailers[name] && e instanceof mailers.TransportError, failure);
    assert.equal(e.failure, failure);
  }
});

test('input errors from sends', async (t) => {
  const { engine } = await captureEngine(t, { maxMessageSize: 2000 });
  const cases = [
    [message('not an address'), mailers.InvalidAddressError],
    [message('a@example.com', { subject: 'x\r\nBcc: victim@example.com' }), mailers.HeaderInjectionError],
    [message('a@example.com', { headers: { 'Bad Name': 'x' } }), mailers.InvalidHeaderError],
    [message('a@example.com', { text: 'x'.repeat(5000) }), mailers.MessageTooLargeError],
    [message('a@example.com', { pool: 'nope' }), mailers.UnknownPoolError],
    [{ mailbox: 'nobody', to: 'a@example.com', text: 'x' }, mailers.UnknownMailboxError],
  ];
  for (const [req, cls] of cases) {
    const err = await engine.send(req).catch((e) => e);
    assert.ok(err instanceof cls, `${cls.name}: got ${err && err.name}: ${err && err.message}`);
    assert.equal(typeof err.code, 'string');
  }
  await assert.rejects(engine.send({ pool: 'out' }), TypeError);
  assert.equal(engine.captured('cap').length, 0);
});

test('unknown provider, unknown time zone, invalid argument, not found', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.upsertMailbox({ id: 'orphan', from: 'o@brand.com', provider: 'nowhere' });
  await assert.rejects(engine.send({ mailbox: 'orphan', to: 'a@example.com', text: 'x' }), mailers.UnknownProviderError);
  await assert.rejects(engine.upsertMailbox({ id: 'tz', from: 'o@brand.com', provider: 'cap', timeZone: 'Nowhere/Land' }), mailers.UnknownTimeZoneError);
  await assert.rejects(engine.upsertPool({ id: 'p', mailboxes: ['rep1'], policy: { maxAttempts: 0 } }), mailers.InvalidArgumentError);
  await assert.rejects(engine.cancelQueued(424242), mailers.NotFoundError);
});

test('no capacity carries retryAt; paused and suppressed are their own classes', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.upsertMailbox({ id: 'rep1', from: 'rep1@brand.com', provider: 'cap', limits: [{ max: 1, seconds: 3600 }] });
  await engine.send(message('a@example.com'));
  const err = await engine.send(message('b@example.com')).catch((e) => e);
  assert.ok(err instanceof mailers.NoCapacityError, err.name);
  assert.ok(err.retryAt instanceof Date);
  assert.ok(err.retryAt.getTime() > Date.now() + 3000e3);
  assert.equal(err.result.retryAt.getTime(), err.retryAt.getTime());
  await engine.suppress('d@example.com');
  await assert.rejects(engine.send(message('d@example.com')), mailers.SuppressedError);
  // A paused mailbox is one that cannot send (no capacity); a paused
  // workspace is a pause.
  await engine.pause();
  await assert.rejects(engine.send(message('c@example.com')), mailers.PausedError);
});

test('permission denied once access control is on', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.putRole({ id: 'admin', permissions: ['manage_access', 'manage_mailboxes', 'send'] });
  await engine.grantAccess({ principal: 'ops@brand.com', role: 'admin' });
  await engine.setAccessControl(true);
  await assert.rejects(engine.suppress('a@example.com', { actor: 'intern' }), mailers.PermissionDeniedError);
  await assert.rejects(engine.send(message('a@example.com', { actor: { id: 'intern' } })), mailers.PermissionDeniedError);
  await engine.send(message('a@example.com'));
});

test('operation aborted after close and after cancel', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.cancel();
  await assert.rejects(engine.send(message('a@example.com')), mailers.OperationAbortedError);
  await engine.close();
  await assert.rejects(engine.send(message('a@example.com')), mailers.OperationAbortedError);
  await assert.rejects(engine.mailboxes(), mailers.OperationAbortedError);
  await engine.close();
});

test('store errors: schema too new, a broken audit chain, an unopenable path', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'ws.db');
  let e = await mailers.Engine.open({ sqlite: file });
  await e.suppress('a@example.com');
  await e.suppress('b@example.com');
  await e.close();

  // Someone edits an audited record behind the engine's back.
  execFileSync('sqlite3', [file, "UPDATE audit SET actor = 'mallory' WHERE seq = 1"]);
  e = await mailers.Engine.open({ sqlite: file });
  const v = await e.verifyAudit();
  assert.equal(v.ok, false);
  assert.equal(v.badSeq, 1);
  await assert.rejects(e.auditCheckpoint(), mailers.AuditChainBrokenError);
  await e.close();

  execFileSync('sqlite3', [file, 'PRAGMA user_version = 9999']);
  await assert.rejects(mailers.Engine.open({ sqlite: file }), mailers.SchemaTooNewError);

  await assert.rejects(mailers.Engine.open({ sqlite: path.join(dir, 'no', 'such', 'dir', 'ws.db') }), (err) => err instanceof mailers.MailersError && ['store_error', 'store_missing'].includes(err.code));
});

test('transport failure classes through the SMTP transport, one mailbox each', async (t) => {
  const server = await smtpServer(t);
  if (server.skip) return t.skip(server.skip);
  const { engine } = await captureEngine(t);
  await engine.addProvider('smtp', server.url);
  const cases = {
    'reject550@example.com': [mailers.RecipientPermanentError, 'recipient_permanent'],
    'throttle@example.com': [mailers.ThrottledError, 'throttled'],
    'quota@example.com': [mailers.QuotaExhaustedError, 'quota_exhausted'],
    'unauth@example.com': [mailers.AuthError, 'auth'],
    'blocked@example.com': [mailers.ReputationError, 'reputation'],
    'code-450-4.2.0@example.com': [mailers.TransientError, 'transient'],
    'toobig@example.com': [mailers.MessageRejectedError, 'message_rejected'],
    'dropdata@example.com': [mailers.UnknownOutcomeError, 'unknown_outcome'],
  };
  let i = 0;
  for (const [to, [cls, failure]] of Object.entries(cases)) {
    const id = `m${i++}`;
    await engine.upsertMailbox({ id, from: `${id}@brand.com`, provider: 'smtp' });
    const err = await engine.send({ mailbox: id, to, subject: 's', text: 't' }).catch((x) => x);
    assert.ok(err instanceof cls, `${to}: expected ${cls.name}, got ${err && err.name}: ${err && err.message}`);
    assert.ok(err instanceof mailers.TransportError);
    assert.equal(err.failure, failure);
    assert.ok(err.diag && typeof err.diag.status === 'number');
    assert.ok(err.result && err.result.sendId, 'a send that reached the transport has a ledger row');
  }
});
