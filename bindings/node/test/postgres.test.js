'use strict';
// The PostgreSQL store, when MAILERS_TEST_PG names a database (a libpq
// conninfo). Skipped otherwise, unless MAILERS_REQUIRE_PG=1 demands it.
const assert = require('node:assert/strict');
const { execFileSync } = require('child_process');
const { test, mailers, message, eventually } = require('./helpers');

const conninfo = process.env.MAILERS_TEST_PG;
const required = process.env.MAILERS_REQUIRE_PG === '1';

test('a workspace on PostgreSQL: sends, suppression, restart, a sequence and a campaign', { skip: !conninfo && !required && 'MAILERS_TEST_PG is not set' }, async (t) => {
  assert.ok(conninfo, 'MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is not set');
  // A schema of its own per run, so runs never see each other's rows.
  const schema = `node_${process.pid}_${Date.now()}`;
  // The database outlives the run: the schema goes when the test ends,
  // once every engine on it is closed.
  const engines = [];
  t.after(async () => {
    for (const x of engines) await x.close();
    dropSchema(t, schema);
  });
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

// DROP SCHEMA through psql (libpq's own client takes the same conninfo).
function dropSchema(t, schema) {
  try {
    execFileSync('psql', [conninfo, '-v', 'ON_ERROR_STOP=1', '-q', '-c', `DROP SCHEMA IF EXISTS "${schema}" CASCADE`], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    t.diagnostic(`schema ${schema} was left behind: ${err.code === 'ENOENT' ? 'psql is not installed' : String(err.stderr || err.message).trim()}`);
  }
}
