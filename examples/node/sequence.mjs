// A two-step sequence from two mailboxes: rep1 opens, rep2 follows up two
// business days later, for three contacts, on a manual clock.
//
//   npm install ./bindings/node        (once; builds the addon)
//   node examples/node/sequence.mjs
//
// Messages go to the capture transport, which keeps them in memory; the
// clock is a manual one that the loop moves to the next due step, so the
// days pass at once.
import { Engine } from 'mailers';

// queuePollIntervalMs: the engine's queue looks for due steps every 10 ms
// instead of every second, so the simulation runs quickly.
const engine = await Engine.open({ sqlite: ':memory:', actor: 'ops@brand.com',
                                   manualClock: new Date('2026-11-30T09:00:00Z'), queuePollIntervalMs: 10 });
await engine.addProvider('cap', 'capture://capture');
await engine.upsertMailbox({ id: 'rep1', from: 'Riley <rep1@brand.com>', provider: 'cap' });
await engine.upsertMailbox({ id: 'rep2', from: 'Sam <rep2@brand.com>', provider: 'cap' });

const events = [];
engine.on('event', (e) => events.push(e));

await engine.upsertSequence({
  id: 'intro',
  steps: [
    { content: { subject: '{Quick|Short} question for {{company}}', text: 'Hi {{first_name|there}}, would a short call work?' },
      sender: { kind: 'mailbox', id: 'rep1' } },
    { delay: { in: 'business_days', amount: 2 },
      content: { subject: 'Following up for Riley', text: 'Hi {{first_name|there}}, picking this up from Riley.' },
      sender: { kind: 'mailbox', id: 'rep2' } },
  ],
});
for (const [to, variables] of [['Ada <ada@acme.example>', { first_name: 'Ada', company: 'Acme' }],
                               ['bob@bolt.example', { company: 'Bolt' }],
                               ['cy@cyan.example', { first_name: 'Cy', company: 'Cyan' }]]) {
  await engine.enroll('intro', to, { variables });
}

// The engine sends each step as it falls due; settle() resolves once it has
// done what is due now, with the next due time (null: nothing left).
for (let next = await engine.settle(); next; next = await engine.settle()) engine.setTime(next);

const states = (await engine.enrollments({ sequenceId: 'intro' })).map((e) => e.state);
// Events reach listeners through the event loop: closing delivers the rest.
await engine.close();
for (const e of events) console.log(e.at.toISOString(), e.type.padEnd(6), 'step', e.step, e.mailbox, '->', e.recipient);
console.log('enrollments:', states.join(', '));
