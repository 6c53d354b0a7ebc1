// Quickstart: one mailbox, one pool, a suppression entry and two sends.
//
//   npm install ./bindings/node        (once; builds the addon)
//   node examples/node/quickstart.mjs
//
// Messages are written as .eml files by the file transport, so nothing
// leaves the machine; swap the DSN for a real provider to send for real.
import { Engine, SuppressedError, DuplicateError } from 'mailers';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = join(tmpdir(), 'mailers-node-quickstart');
mkdirSync(dir, { recursive: true });

// 1. A store (one SQLite file holds the whole workspace) and the engine,
//    acting as this principal: every change is audited under it.
const engine = await Engine.open({ sqlite: join(dir, 'workspace.db'), actor: { id: 'ops@brand.com', displayName: 'Ops' } });

// 2. A provider by DSN (secrets as env:NAME or file:/path references), a
//    mailbox with caps, and a pool.
await engine.addProvider('files', `file://${join(dir, 'out')}`);
await engine.upsertMailbox({
  id: 'rep1',
  from: 'Riley from Brand <rep1@brand.com>',
  provider: 'files',
  limits: [{ max: 50, seconds: 86400 }, { max: 10, seconds: 3600 }],
  timeZone: 'Europe/Berlin',
});
await engine.upsertPool({ id: 'outbound', mailboxes: ['rep1'] });

// 3. Someone asked not to be contacted: every send respects it from now on.
await engine.suppress('no-thanks@example.com', { reason: 'unsubscribe' });

engine.on('event', (e) => console.log(`  event: ${e.type} ${e.recipient}`));

// 4. Send. Each send is a Promise; refusals are Error subclasses.
for (const to of ['ada@example.com', 'no-thanks@example.com']) {
  try {
    const r = await engine.send({
      pool: 'outbound',
      to,
      subject: 'Quick question',
      text: 'Hi! Would a short call next week work?',
      idempotencyKey: `quickstart:${to}`,
    });
    console.log(`${to}: sent by ${r.mailbox}, id ${r.providerMessageId}`);
  } catch (err) {
    if (err instanceof DuplicateError) console.log(`${to}: already sent earlier (idempotency key)`);
    else if (err instanceof SuppressedError) console.log(`${to}: not sent, suppressed`);
    else throw err;
  }
}

await engine.close();
console.log(`messages are in ${join(dir, 'out')}`);
