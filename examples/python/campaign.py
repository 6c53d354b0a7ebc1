"""A campaign: one template to 30 recipients through a pool of two mailboxes
capped at 10 a day each, forecast first, then sent over the days the caps allow.

    PYTHONPATH=build/bindings/python python3 examples/python/campaign.py

Messages go to the capture transport; the clock is a manual one.
"""

import datetime as dt

import mailers

start = dt.datetime(2026, 11, 30, 9, tzinfo=dt.timezone.utc)  # a Monday
clock = mailers.ManualClock(start)

with mailers.Engine(mailers.SQLite(":memory:"), clock=clock, queue_poll_interval=0.01,
                    actor=mailers.Principal("ops@brand.com", "Ops")) as engine:
    engine.add_provider("cap", "capture://capture")
    for id, name in [("rep1", "Riley"), ("rep2", "Sam")]:
        engine.upsert_mailbox(mailers.Mailbox(id, f"{name} <{id}@brand.com>", "cap",
                                              limits=[mailers.per_day(10)]))
    engine.upsert_pool(mailers.Pool("sdr", ["rep1", "rep2"]))
    engine.suppress("lead7@example.com", reason="unsubscribe")  # never contacted

    launch = mailers.Campaign(
        "q4-launch", pool="sdr", subject="{Hi|Hello} {{first_name|there}}",
        text="We launched something you asked about.\n",
        recipients=[mailers.Recipient(f"lead{i}@example.com", {"first_name": f"Lead {i}"})
                    for i in range(30)])

    # A dry run on a private copy of the workspace: nothing is sent.
    plan = engine.forecast(campaign=launch, horizon=dt.timedelta(days=7))
    print(f"forecast: {len(plan.sends)} sends, the last at {plan.last:%a %d %b %H:%M}")

    info = engine.start_campaign(launch)
    print(f"started {info.id}: {info.total} recipients, "
          f"{info.suppressed_at_start} suppressed at start")
    # The queue sends what the caps allow, and the rest waits ("cap") until the
    # rolling day frees room; the loop moves the clock to each such time.
    while (due := engine.settle()) is not None:
        if due.date() != clock.now().date():
            p = engine.campaign_progress("q4-launch")
            print(f"{clock.now():%a %d %b}: sent {p.sent}, waiting {p.waiting_by_reason}")
        clock.set(due)
    p = engine.campaign_progress("q4-launch")
    print(f"done: sent {p.sent}, finished {p.finished}")
    by_mailbox = {}
    for m in engine.captured("cap"):
        by_mailbox[m.mailbox] = by_mailbox.get(m.mailbox, 0) + 1
    print("by mailbox:", by_mailbox)
