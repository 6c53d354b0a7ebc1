'use strict';
// The PostgreSQL store, when MAILERS_TEST_PG names a database (a libpq
// conninfo). Skipped otherwise, unless MAILERS_REQUIRE_PG=1 demands it.
const assert = require('node:assert/strict');
const { test, mailers, message } = require('./helpers');

const conninfo = process.env.MAILERS_TEST_PG;
const required = process.env.MAILERS_REQUIRE_PG === '1';

test('a workspace on PostgreSQL: sends, suppression, restart', { skip: !conninfo && !required && 'MAILERS_TEST_PG is not set' }, async (t) => {
  assert.ok(conninfo, 'MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is not set');
  // A schema of its own per run, so runs never see each other's rows.
  const schema = `node_${process.pid}_${Date.now()}`;
  process.env.MAILERS_NODE_TEST_CONNINFO = conninfo;
  const open = (mode) => mailers.Engine.open({ postgres: 'env:MAILERS_NODE_TEST_CONNINFO', schema, mode, actor: 'ops' });
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
  t.after(() => e.close());
  await e.addProvider('cap', 'capture://capture');
  assert.equal(await e.isSuppressed('no@example.com'), true);
  const dup = await e.send(message('pg7@example.com', { idempotencyKey: 'pg7' })).catch((x) => x);
  assert.ok(dup instanceof mailers.DuplicateError);
  assert.equal(dup.result.sendId, results[7].sendId);
  assert.equal((await e.verifyAudit()).ok, true);
});
