'use strict';
// Stored providers (save, list, remove, shared by the engines of a
// workspace) and provider checks, which send nothing.
const assert = require('node:assert/strict');
const net = require('net');
const path = require('path');
const { test, mailers, captureEngine, smtpServer } = require('./helpers');

// A 127.0.0.1 port nothing listens on.
function closedPort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

process.env.MAILERS_NODE_TEST_SMTP_PASSWORD = 's3cret';
const dsn = 'smtp://apikey:env:MAILERS_NODE_TEST_SMTP_PASSWORD@127.0.0.1:2525?tls=none';

test('a saved provider is listed, and a second engine on the workspace builds it', async (t) => {
  const { engine, dir } = await captureEngine(t);
  await engine.saveProvider('relay', dsn);
  const [p] = await engine.storedProviders();
  assert.deepEqual([p.id, p.dsn, p.active], ['relay', dsn, true]);
  assert.ok(p.createdAt instanceof Date && p.updatedAt.getTime() === p.createdAt.getTime());
  const other = await mailers.Engine.open({ sqlite: path.join(dir, 'ws.db'), actor: 'ops' });
  t.after(() => other.close());
  assert.deepEqual((await other.storedProviders()).map((x) => [x.id, x.dsn, x.active]), [['relay', dsn, true]]);
});

test('an inline secret is refused and nothing is stored', async (t) => {
  const { engine } = await captureEngine(t);
  await assert.rejects(engine.saveProvider('relay', 'smtp://apikey:hunter2@127.0.0.1:2525?tls=none'), (e) => {
    assert.ok(e instanceof mailers.InvalidArgumentError);
    assert.match(e.message, /password/);
    assert.doesNotMatch(e.message, /hunter2/);
    return true;
  });
  await assert.rejects(engine.saveProvider('relay', 'nosuchscheme://x'), mailers.InvalidArgumentError);
  assert.deepEqual(await engine.storedProviders(), []);
});

test('removing a provider is refused while a mailbox uses it', async (t) => {
  const { engine } = await captureEngine(t);
  await engine.saveProvider('stored', 'capture://capture');
  await engine.upsertMailbox({ id: 'rep2', from: 'rep2@brand.com', provider: 'stored' });
  await assert.rejects(engine.removeProvider('stored'), mailers.InvalidArgumentError);
  assert.deepEqual((await engine.storedProviders()).map((p) => p.id), ['stored']);
  await engine.retireMailbox('rep2');
  await engine.removeProvider('stored');
  assert.deepEqual(await engine.storedProviders(), []);
  await assert.rejects(engine.removeProvider('stored'), mailers.NotFoundError);
});

test('checkProvider checks a stored SMTP provider without sending', async (t) => {
  const server = await smtpServer(t);
  if (server.skip) return t.skip(server.skip);
  const { engine } = await captureEngine(t);
  await engine.saveProvider('relay', server.url);
  const r = await engine.checkProvider('relay');
  assert.deepEqual([r.provider, r.transport, r.ok, r.failure], ['relay', 'smtp', true, null]);
  assert.ok(r.message);
  assert.deepEqual(server.messages(), []);
});

test('checkProvider takes a DSN; capture has nothing to check', async (t) => {
  const { engine } = await captureEngine(t);
  const r = await engine.checkProvider({ dsn: 'capture://capture' });
  assert.deepEqual([r.provider, r.transport, r.ok], ['', 'capture', true]);
  assert.match(r.message, /nothing to check/);
});

test('a failed check rejects with its failure class, the check on result', async (t) => {
  const { engine } = await captureEngine(t);
  const port = await closedPort();
  await assert.rejects(engine.checkProvider({ dsn: `smtp://127.0.0.1:${port}?tls=none` }), (e) => {
    assert.ok(e instanceof mailers.TransientError, String(e));
    assert.equal(e.failure, 'transient');
    assert.deepEqual([e.result.ok, e.result.failure, e.result.transport], [false, 'transient', 'smtp']);
    return true;
  });
});

test('checkProvider refuses bad input', async (t) => {
  const { engine } = await captureEngine(t);
  await assert.rejects(engine.checkProvider('nosuch'), mailers.NotFoundError);
  await assert.rejects(engine.checkProvider({ dsn: 'nosuchscheme://x' }), mailers.InvalidArgumentError);
  await assert.rejects(engine.checkProvider(42), TypeError);
});
