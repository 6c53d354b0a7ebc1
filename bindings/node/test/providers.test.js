'use strict';
// Stored providers (save, list, remove, shared by the engines of a
// workspace) and provider checks, which send nothing.
const assert = require('node:assert/strict');
const { execFileSync } = require('child_process');
const net = require('net');
const path = require('path');
const { test, mailers, captureEngine, smtpServer, tempDir } = require('./helpers');

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

test("checkProvider checks the host's provider before a stored one", async (t) => {
  const { engine } = await captureEngine(t);
  // captureEngine registered "cap" (capture); the store holds another "cap".
  await engine.saveProvider('cap', `smtp://127.0.0.1:${await closedPort()}?tls=none`);
  const r = await engine.checkProvider('cap');
  assert.deepEqual([r.provider, r.transport, r.ok], ['cap', 'capture', true]);
});

// A throwaway self-signed certificate for the test SMTP server's STARTTLS;
// null when the openssl tool cannot make one.
function selfSigned(t) {
  const dir = tempDir(t);
  const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
      '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  } catch {
    return null;
  }
  return { cert, key };
}

test('an SMTP AUTH refusal rejects with AuthError, the check on result', async (t) => {
  const pki = selfSigned(t);
  if (!pki) return t.skip('the openssl tool could not make a certificate');
  const server = await smtpServer(t, ['--cert', pki.cert, '--key', pki.key, '--user', 'alice', '--password', 'right']);
  if (server.skip) return t.skip(server.skip);
  const { engine } = await captureEngine(t);
  const dsn = `smtp://alice:env:MAILERS_NODE_TEST_AUTH_PW@127.0.0.1:${server.port}?verify=false`;
  process.env.MAILERS_NODE_TEST_AUTH_PW = 'right';
  await engine.saveProvider('relay', dsn);
  assert.equal((await engine.checkProvider('relay')).ok, true);
  process.env.MAILERS_NODE_TEST_AUTH_PW = 'Wr0ngPassw0rd';
  await engine.saveProvider('relay', dsn); // built again with the variable as it is now
  await assert.rejects(engine.checkProvider('relay'), (e) => {
    assert.ok(e instanceof mailers.AuthError, String(e));
    assert.equal(e.failure, 'auth');
    assert.deepEqual([e.result.ok, e.result.failure, e.result.provider], [false, 'auth', 'relay']);
    assert.doesNotMatch(e.message, /Wr0ngPassw0rd/);
    return true;
  });
  delete process.env.MAILERS_NODE_TEST_AUTH_PW;
  assert.deepEqual(server.messages(), []);
});

test('a stored DSN that cannot be built here rejects with InvalidArgumentError', async (t) => {
  const { engine, dir } = await captureEngine(t);
  process.env.MAILERS_NODE_TEST_GONE = 's3cret';
  await engine.saveProvider('gone', 'smtp://u:env:MAILERS_NODE_TEST_GONE@127.0.0.1:1?tls=none');
  delete process.env.MAILERS_NODE_TEST_GONE;
  const other = await mailers.Engine.open({ sqlite: path.join(dir, 'ws.db'), actor: 'ops' });
  t.after(() => other.close());
  await assert.rejects(other.checkProvider('gone'), (e) => {
    assert.ok(e instanceof mailers.InvalidArgumentError, String(e));
    assert.match(e.message, /MAILERS_NODE_TEST_GONE/);
    return true;
  });
});

test('close() cancels a check waiting on a silent peer', async (t) => {
  // Accepts connections and never answers.
  const sockets = [];
  let connected;
  const accepted = new Promise((resolve) => (connected = resolve));
  const peer = net.createServer((s) => {
    sockets.push(s);
    connected();
  });
  await new Promise((resolve) => peer.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    peer.close();
  });
  const { engine } = await captureEngine(t);
  await engine.saveProvider('silent', `smtp://127.0.0.1:${peer.address().port}?tls=none`);
  const rejected = assert.rejects(engine.checkProvider('silent'), mailers.OperationAbortedError);
  await accepted; // the check is connected, waiting for a greeting
  await engine.close();
  await rejected;
});
