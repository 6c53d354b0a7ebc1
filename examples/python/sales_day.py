"""A sales team with 30 mailboxes on 5 domains, through one simulated Monday.

Each mailbox has its own daily and hourly cap, a warm-up ramp, a send window
in its own time zone, human spacing and a rotation weight. Prospects are
owned by a rep; when the owner is out of capacity the send rotates through
the weighted pool. One suppression list covers everybody. The day runs on a
manual clock and every message lands as a .eml file. (The C++ version is
examples/2_sales_day.cpp.)

    PYTHONPATH=build/bindings/python python3 examples/python/sales_day.py [folder]
"""

import collections
import datetime as dt
import pathlib
import random
import shutil
import sys
import tempfile

import mailers

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1
                   else pathlib.Path(tempfile.gettempdir()) / "mailers-demo-py")
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)

# Monday 30 November 2026, 06:00 UTC: before anyone's window opens.
start = dt.datetime(2026, 11, 30, 6, tzinfo=dt.timezone.utc)
clock = mailers.ManualClock(start)
ops = mailers.Principal("ops@brand.com", "Sales Ops")
engine = mailers.Engine(mailers.SQLite(str(out / "workspace.db")), actor=ops, clock=clock,
                        random_seed=2026)
engine.add_provider("workspace-files", f"file://{out / 'eml'}")

domains = [("brand.com", "America/New_York", 60), ("getbrand.com", "America/Chicago", 30),
           ("brandhq.io", "Europe/London", 14), ("trybrand.co", "Europe/Berlin", 5),
           ("brand.ai", "America/Los_Angeles", 1)]  # (domain, zone, days warming up)
reps = ["alex", "blair", "casey", "drew", "emery", "finley"]
ids = []
for domain, zone, warm_days in domains:
    for n, rep in enumerate(reps):
        mailbox = mailers.Mailbox(
            f"{rep}@{domain}", f"{rep} at {domain} <{rep}@{domain}>", "workspace-files",
            limits=[mailers.per_day(30 + 4 * n), mailers.per_hour(8)],
            warmup=mailers.Warmup(5, 5, 50, start - dt.timedelta(days=warm_days)),
            time_zone=zone, window=mailers.SendWindow(9, 17, mailers.WEEKDAYS_MON_FRI),
            min_gap=dt.timedelta(minutes=3), jitter=dt.timedelta(minutes=4), weight=1 + n % 3)
        engine.upsert_mailbox(mailbox)
        ids.append(mailbox.id)
engine.upsert_pool(mailers.Pool("outbound", ids, policy="weighted"))

# 3,000 prospects, each owned by a rep; 6% asked not to be contacted, and one
# company's legal team asked for a domain-wide block.
rng = random.Random(7)
prospects = [(f"lead{i}@company{i % 400}.example", ids[i % len(ids)]) for i in range(3000)]
opted_out = [email for email, _ in prospects if rng.random() < 0.06]
engine.import_suppressions("".join(f"{e},address,unsubscribe,crm-sync\n" for e in opted_out))
engine.suppress("company13.example", kind="domain", reason="legal", source="legal-request")

sent: collections.Counter[str] = collections.Counter()
rotated_in: collections.Counter[str] = collections.Counter()
suppressed: collections.Counter[str] = collections.Counter()
deferred = 0
end = start + dt.timedelta(hours=24)
i = 0
while clock.now() < end and i < len(prospects):
    email, owner = prospects[i]
    message = dict(subject=f"Idea for {email.split('@')[1]}",
                   text=f"Hi,\n\nI noticed your team is hiring. Worth a short call?\n\n-- {owner}\n",
                   idempotency_key=f"demo:{email}", unsubscribe_url=f"https://brand.com/u/{i}")
    try:
        try:
            r = engine.send(email, mailbox=owner, **message)
        except mailers.NoCapacity:
            # The owner is out of capacity now: rotate through the pool.
            r = engine.send(email, pool="outbound", **message)
            rotated_in[r.mailbox] += 1
        sent[r.mailbox] += 1
        i += 1
    except mailers.Suppressed:
        suppressed[owner] += 1
        i += 1
    except mailers.NoCapacity as e:
        # Nobody can send right now: wait until someone can (deferred, not dropped).
        deferred += 1
        wait = e.retry_at or clock.now() + dt.timedelta(minutes=1)
        if wait > end:
            break
        clock.set(max(wait, clock.now() + dt.timedelta(seconds=1)))

print("\nA simulated Monday for 30 mailboxes on 5 domains (file transport, manual clock)\n")
print(f"{'mailbox':22} {'time zone':20} {'cap':>5} {'sent':>5} {'via':>6} {'suppr.':>8}")
caps_held = True
for m in engine.mailboxes():
    st = engine.status(m.id)
    cap = st.effective_daily_cap or 0
    caps_held &= sent[m.id] <= cap
    print(f"{m.id:22} {m.time_zone:20} {cap:5} {sent[m.id]:5} {rotated_in[m.id]:6} "
          f"{suppressed[m.id]:8}")
print(f"\n{sum(sent.values())} sent, {sum(suppressed.values())} skipped because suppressed "
      f"({len(opted_out)} address entries + 1 domain), {deferred} waits for capacity,\n"
      f"{len(prospects) - i} prospects left for tomorrow. "
      + ("Caps held: no mailbox sent more than its warm-up or daily cap." if caps_held
         else "A MAILBOX SENT MORE THAN ITS CAP."))
engine.verify_audit()
print(f"Messages: {out / 'eml'}\nWorkspace (SQLite): {out / 'workspace.db'}\nAudit chain: verifies")
engine.close()
