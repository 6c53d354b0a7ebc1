'use strict';
// The PostgreSQL store, when MAILERS_TEST_PG names a database (a libpq
// conninfo). Skipped otherwise, unless MAILERS_REQUIRE_PG=1 demands it.
const assert = require('node:assert/strict');
const { execFileSync } = require('child_process');
const { test, mailers, message, eventually } = require('./helpers');

const conninfo = process.env.MAILERS_TEST_PG;
const required = process.env.MAILERS_REQUIRE_PG === '1';

// A test on a schema of its own (`prefix`_pid_time), so runs never see each
// other's rows. The database outlives the run: the schema goes when the test
// ends, once every engine in `engines` is closed.
function pgTest(name, prefix, fn) {
  test(name, { skip: !conninfo && !required && 'MAILERS_TEST_PG is not set' }, async (t) => {
    assert.ok(conninfo, 'MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is not set');
    const schema = `${prefix}_${process.pid}_${Date.now()}`;
    const engines = [];
    t.after(async () => {
      for (const x of engines) await x.close();
      dropSchema(t, schema);
    });
    await fn(schema, engines);
  });
}

pgTest('a workspace on PostgreSQL: sends, suppression, restart, a sequence and a campaign', 'node', async (schema, engines) => {
  process.env.MAILERS_NODE_TEST_CONNINFO = conninfo;
  const open = async (mode) => {
    const x = await mailers.Engine.open({ postgres: 'env:MAILERS_NODE_TEST_CONNINFO', schema, mode, actor: 'ops', queuePollIntervalMs: 20 });
    engines.push(x);
    return x;
  };
  let e = await open('create');
  await e.addProvider('cap', 'capture://capture');
  await e.upsertMailbox({ id: 'rep1', from: 'rep1@brand.com', provider: 'cap' });
  await e.upsertPool({ id: 'out', mailboxes: ['rep1'] });
  await e.suppress('no@example.com');
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => e.send(message(`pg${i}@example.com`, { idempotencyKey: `pg${i}` }))));
  assert.equal(new Set(results.map((r) => r.sendId)).size, 200);
  await assert.rejects(e.send(message('no@example.com')), mailers.SuppressedError);
  await e.close();

  await assert.rejects(open('create'), mailers.StoreExistsError);
  e = await open('existing');
  await e.addProvider('cap', 'capture://capture');
  assert.equal(await e.isSuppressed('no@example.com'), true);
  const dup = await e.send(message('pg7@example.com', { idempotencyKey: 'pg7' })).catch((x) => x);
  assert.ok(dup instanceof mailers.DuplicateError);
  assert.equal(dup.result.sendId, results[7].sendId);
  assert.equal((await e.verifyAudit()).ok, true);

  // A sequence step and a campaign through the queue in the same store.
  await e.upsertSequence({ id: 'pg-seq', steps: [{ content: { subject: 'Hi {{first_name}}', text: 'x' }, sender: { kind: 'pool', id: 'out' } }] });
  const en = await e.enroll('pg-seq', 'seq@example.com', { variables: { first_name: 'Sam' } });
  await e.startCampaign({ id: 'pg-camp', content: { subject: 'News', text: 'y' }, pool: 'out', recipients: ['c1@example.com', 'c2@example.com'] });
  const done = async () => (await e.enrollment(en.id)).state === 'completed' && (await e.campaignProgress('pg-camp')).sent === 2;
  await eventually(done, 20000);
  assert.ok(await done(), 'the step and the campaign were sent');
  assert.deepEqual(e.captured('cap').map((m) => m.subject).sort(), ['Hi Sam', 'News', 'News']);
  assert.deepEqual((await e.enrollments({ sequenceId: 'pg-seq' })).map((x) => x.address), ['seq@example.com']);
});

pgTest('an erasure on PostgreSQL holds in every engine of the workspace', 'node_erase', async (schema, engines) => {
  const open = async () => {
    const x = await mailers.Engine.open({ postgres: conninfo, schema, actor: 'ops' });
    engines.push(x);
    await x.addProvider('cap', 'capture://capture');
    return x;
  };
  const a = await open();
  const b = await open();
  await a.upsertMailbox({ id: 'rep1', from: 'rep1@brand.com', provider: 'cap' });
  await a.send({ mailbox: 'rep1', to: 'dee@example.com', subject: 's', text: 't' });
  assert.equal((await b.exportPerson('dee@example.com')).sends.length, 1);
  const r = await a.erasePerson('dee@example.com');
  assert.equal(r.erased.sends, 1);
  // erasePerson resolves once every engine of the workspace holds the hash.
  assert.equal(await b.isSuppressed('dee@example.com'), true);
  assert.equal((await b.exportPerson('dee@example.com')).suppressed, true);
  assert.equal((await b.erasePerson('dee@example.com')).hash, r.hash);
  assert.equal((await b.purgeRetained({ sends: 8 * 86400 })).sends, 0);
  assert.equal((await a.verifyAudit()).ok, true);
});

pgTest('a stored provider on PostgreSQL reaches every engine of the workspace', 'node_prov', async (schema, engines) => {
  process.env.MAILERS_NODE_TEST_SMTP_PASSWORD = 's3cret';
  const dsn = 'smtp://apikey:env:MAILERS_NODE_TEST_SMTP_PASSWORD@127.0.0.1:2525?tls=none';
  const open = async () => {
    const x = await mailers.Engine.open({ postgres: conninfo, schema, actor: 'ops' });
    engines.push(x);
    return x;
  };
  const a = await open();
  const b = await open();
  await assert.rejects(a.saveProvider('relay', 'smtp://apikey:hunter2@127.0.0.1:2525?tls=none'), mailers.InvalidArgumentError);
  await a.saveProvider('relay', dsn);
  // b, already running, learns it through the change feed.
  await eventually(async () => (await b.storedProviders()).length === 1, 20000);
  assert.deepEqual((await b.storedProviders()).map((p) => [p.id, p.dsn, p.active]), [['relay', dsn, true]]);
  await a.upsertMailbox({ id: 'rep1', from: 'rep1@brand.com', provider: 'relay' });
  await eventually(async () => (await b.mailbox('rep1')) !== null, 20000);
  await assert.rejects(b.removeProvider('relay'), mailers.InvalidArgumentError);
  await a.retireMailbox('rep1');
  await eventually(async () => (await b.mailbox('rep1')).state === 'retired', 20000);
  await b.removeProvider('relay');
  assert.deepEqual(await b.storedProviders(), []);
  await eventually(async () => (await a.storedProviders()).length === 0, 20000);
  assert.deepEqual(await a.storedProviders(), []);
});

// DROP SCHEMA through psql (libpq's own client takes the same conninfo).
function dropSchema(t, schema) {
  try {
    execFileSync('psql', [conninfo, '-v', 'ON_ERROR_STOP=1', '-q', '-c', `DROP SCHEMA IF EXISTS "${schema}" CASCADE`], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    t.diagnostic(`schema ${schema} was left behind: ${err.code === 'ENOENT' ? 'psql is not installed' : String(err.stderr || err.message).trim()}`);
  }
}
