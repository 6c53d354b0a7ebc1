// A campaign: one template to 30 recipients through a pool of two mailboxes
// capped at 10 a day each, forecast first, then sent over the days the caps
// allow.
//
//   npm install ./bindings/node        (once; builds the addon)
//   node examples/node/campaign.mjs
//
// Messages go to the capture transport; the clock is a manual one.
import { Engine } from 'mailers';

const engine = await Engine.open({ sqlite: ':memory:', actor: 'ops@brand.com',
                                   manualClock: new Date('2026-11-30T09:00:00Z'), queuePollIntervalMs: 10 });
await engine.addProvider('cap', 'capture://capture');
for (const [id, name] of [['rep1', 'Riley'], ['rep2', 'Sam']])
  await engine.upsertMailbox({ id, from: `${name} <${id}@brand.com>`, provider: 'cap', limits: [{ max: 10, seconds: 86400 }] });
await engine.upsertPool({ id: 'sdr', mailboxes: ['rep1', 'rep2'] });
await engine.suppress('lead7@example.com', { reason: 'unsubscribe' }); // never contacted

const launch = {
  id: 'q4-launch',
  pool: 'sdr',
  content: { subject: '{Hi|Hello} {{first_name|there}}', text: 'We launched something you asked about.\n' },
  recipients: Array.from({ length: 30 }, (_, i) => ({ to: `lead${i}@example.com`, variables: { first_name: `Lead ${i}` } })),
};

// A dry run on a private copy of the workspace: nothing is sent.
const plan = await engine.forecast({ campaign: launch, horizon: 7 * 86400 });
console.log(`forecast: ${plan.sends.length} sends, the last at ${plan.last.toISOString()}`);

const info = await engine.startCampaign(launch);
console.log(`started ${info.id}: ${info.total} recipients, ${info.suppressedAtStart} suppressed at start`);
// The queue sends what the caps allow, and the rest waits ('cap') until the
// rolling day frees room; the loop moves the clock to each such time.
const day = (d) => d.toISOString().slice(0, 10);
for (let next = await engine.settle(); next; next = await engine.settle()) {
  if (day(next) !== day(engine.now())) {
    const p = await engine.campaignProgress('q4-launch');
    console.log(`${day(engine.now())}: sent ${p.sent}, waiting`, p.waitingByReason);
  }
  engine.setTime(next);
}
const p = await engine.campaignProgress('q4-launch');
console.log(`done: sent ${p.sent}, finished ${p.finished}`);
const byMailbox = {};
for (const m of engine.captured('cap')) byMailbox[m.mailbox] = (byMailbox[m.mailbox] || 0) + 1;
console.log('by mailbox:', byMailbox);
await engine.close();
