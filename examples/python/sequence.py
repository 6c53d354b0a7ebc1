"""A two-step sequence from two mailboxes: rep1 opens, rep2 follows up two
business days later, for three contacts, on a manual clock.

    PYTHONPATH=build/bindings/python python3 examples/python/sequence.py

Messages go to the capture transport, which keeps them in memory; the clock is
a manual one that the loop moves to the next due step, so the days pass at once.
"""

import datetime as dt

import mailers

start = dt.datetime(2026, 11, 30, 9, tzinfo=dt.timezone.utc)  # a Monday
clock = mailers.ManualClock(start)
events = []

# queue_poll_interval: the engine's queue looks for due steps every 10 ms
# instead of every second, so the simulation runs quickly.
with mailers.Engine(mailers.SQLite(":memory:"), clock=clock, queue_poll_interval=0.01,
                    actor=mailers.Principal("ops@brand.com", "Ops")) as engine:
    engine.add_provider("cap", "capture://capture")
    engine.upsert_mailbox(mailers.Mailbox("rep1", "Riley <rep1@brand.com>", "cap"))
    engine.upsert_mailbox(mailers.Mailbox("rep2", "Sam <rep2@brand.com>", "cap"))
    engine.on_event(lambda e: events.append(e))

    engine.upsert_sequence(mailers.Sequence("intro", steps=[
        mailers.Step(mailers.SenderRule.mailbox("rep1"), mailers.hours(0),
                     subject="{Quick|Short} question for {{company}}",
                     text="Hi {{first_name|there}}, would a short call work?"),
        mailers.Step(mailers.SenderRule.mailbox("rep2"), mailers.business_days(2),
                     subject="Following up for Riley",
                     text="Hi {{first_name|there}}, picking this up from Riley."),
    ]))
    for to, vars in [("Ada <ada@acme.example>", {"first_name": "Ada", "company": "Acme"}),
                     ("bob@bolt.example", {"company": "Bolt"}),
                     ("cy@cyan.example", {"first_name": "Cy", "company": "Cyan"})]:
        engine.enroll("intro", to, variables=vars)

    # The engine sends each step as it falls due; settle() answers once it
    # has done what is due now, with the next due time (None: nothing left).
    while (due := engine.settle()) is not None:
        clock.set(due)

    states = [e.state for e in engine.enrollments(sequence_id="intro")]

# Closing the engine delivered every event to the callback.
for e in events:
    print(f"{e.at:%a %d %b %H:%M} {e.type:6} step {e.step} {e.mailbox} -> {e.recipient}")
print("enrollments:", ", ".join(states))
