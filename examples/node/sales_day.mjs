// A sales team with 30 mailboxes on 5 domains, as examples/2_sales_day.cpp.
//
// Each mailbox has its own daily and hourly cap, a warm-up ramp, a send
// window in its own time zone, human spacing (minimum gap plus jitter) and
// a rotation weight. Prospects are owned by a rep; when the owner is out of
// capacity the send rotates through the weighted pool. One suppression list
// covers everybody. A simulated working day runs on a manual clock and
// every message lands as a .eml file.
//
//   node examples/node/sales_day.mjs [output-folder]
import { Engine, NoCapacityError, SuppressedError } from 'mailers';
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const out = process.argv[2] ?? join(tmpdir(), 'mailers-node-demo');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const HOUR = 3600e3;
const start = Date.UTC(2026, 10, 30, 6); // Monday 30 November 2026, 06:00 UTC
const engine = await Engine.open({
  sqlite: join(out, 'workspace.db'),
  manualClock: start,
  randomSeed: 2026,
  actor: { id: 'ops@brand.com', displayName: 'Sales Ops' },
});
await engine.addProvider('workspace-files', `file://${join(out, 'eml')}`);

// 5 domains x 6 reps. Older domains are warmed up; newer ones ramp.
const domains = [
  ['brand.com', 'America/New_York', 60],
  ['getbrand.com', 'America/Chicago', 30],
  ['brandhq.io', 'Europe/London', 14],
  ['trybrand.co', 'Europe/Berlin', 5],
  ['brand.ai', 'America/Los_Angeles', 1],
];
const reps = ['alex', 'blair', 'casey', 'drew', 'emery', 'finley'];
const ids = [];
for (const [domain, timeZone, warmDays] of domains) {
  for (const [r, rep] of reps.entries()) {
    const id = `${rep}@${domain}`;
    await engine.upsertMailbox({
      id,
      from: `${rep} at ${domain} <${id}>`,
      provider: 'workspace-files',
      limits: [{ max: 30 + 4 * r, seconds: 86400 }, { max: 8, seconds: 3600 }],
      warmup: { start: 5, step: 5, target: 50, startDate: start - warmDays * 24 * HOUR },
      timeZone,
      window: { startHour: 9, endHour: 17, weekdays: 0x3e },
      minGap: 180,
      jitter: 240,
      weight: 1 + (r % 3),
    });
    ids.push(id);
  }
}
await engine.upsertPool({ id: 'outbound', mailboxes: ids, policy: { kind: 'weighted' } });

// 3,000 prospects, each owned by a rep; about 6% asked not to be contacted,
// and one company's legal team asked for a domain-wide block.
let seed = 7;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const prospects = Array.from({ length: 3000 }, (_, i) => ({
  email: `lead${i}@company${i % 400}.example`,
  owner: ids[i % ids.length],
}));
let suppressedEntries = 0;
for (const p of prospects) {
  if (random() < 0.06) {
    await engine.suppress(p.email, { reason: 'unsubscribe', source: 'crm-sync' });
    suppressedEntries++;
  }
}
await engine.suppress('company13.example', { kind: 'domain', reason: 'legal', source: 'legal-request' });

const tally = new Map(ids.map((id) => [id, { sent: 0, suppressed: 0, rotatedIn: 0 }]));
let next = 0;
let waits = 0;
const end = start + 24 * HOUR;
while (engine.now().getTime() < end && next < prospects.length) {
  const p = prospects[next];
  const request = {
    mailbox: p.owner,
    to: p.email,
    subject: `Idea for ${p.email.split('@')[1]}`,
    text: `Hi,\n\nI noticed your team is hiring. Worth a short call?\n\n-- ${p.owner}\n`,
    idempotencyKey: `demo:${p.email}`,
    unsubscribe: { url: `https://brand.com/u/${next}` },
  };
  try {
    let r;
    try {
      r = await engine.send(request);
    } catch (err) {
      if (!(err instanceof NoCapacityError)) throw err;
      // The owner is out of capacity now: rotate through the pool.
      r = await engine.send({ ...request, mailbox: undefined, pool: 'outbound' });
      tally.get(r.mailbox).rotatedIn++;
    }
    tally.get(r.mailbox).sent++;
    next++;
  } catch (err) {
    if (err instanceof SuppressedError) {
      tally.get(p.owner).suppressed++;
      next++;
    } else if (err instanceof NoCapacityError) {
      // Nobody can send right now: wait until someone can.
      waits++;
      const wait = err.retryAt ? err.retryAt.getTime() : engine.now().getTime() + 60e3;
      if (wait > end) break;
      engine.setTime(Math.max(wait, engine.now().getTime() + 1000));
    } else {
      throw err;
    }
  }
}

console.log('\nA simulated Monday for 30 mailboxes on 5 domains (file transport, manual clock)\n');
console.log('mailbox                time zone            cap  sent  via pool  suppr.');
let sent = 0;
let skipped = 0;
let capsHeld = true;
for (const m of await engine.mailboxes()) {
  const st = await engine.status(m.id);
  const t = tally.get(m.id);
  if (st.effectiveDailyCap !== null && t.sent > st.effectiveDailyCap) capsHeld = false;
  sent += t.sent;
  skipped += t.suppressed;
  console.log(
    `${m.id.padEnd(22)} ${m.timeZone.padEnd(20)} ${String(st.effectiveDailyCap ?? '-').padStart(4)} ${String(t.sent).padStart(5)} ${String(t.rotatedIn).padStart(9)} ${String(t.suppressed).padStart(7)}`,
  );
}
console.log(
  `\n${sent} sent, ${skipped} skipped because suppressed (${suppressedEntries} address entries + 1 domain), ` +
    `${waits} waits for capacity, ${prospects.length - next} prospects left for tomorrow.`,
);
console.log(capsHeld ? 'Caps held: no mailbox sent more than its warm-up or daily cap.' : 'A MAILBOX SENT MORE THAN ITS CAP.');
console.log(`Audit chain: ${(await engine.verifyAudit()).ok ? 'verifies' : 'BROKEN'}`);
await engine.close();
