"""Campaigns (start, progress, cancel, refusals) and forecasts, blocking and asyncio."""

import asyncio
import datetime as dt

import pytest

import mailers
from conftest import MONDAY, OPS, sim_engine, wait_until
from test_sequences import outreach

DAY = dt.timedelta(days=1)


@pytest.fixture
def sim(db):
    eng, clock = sim_engine(db)
    with eng:
        yield eng, clock


def capped(eng, per_hour=0, per_day=0):
    for id in ("rep1", "rep2"):
        m = eng.find_mailbox(id)
        m.limits = ([mailers.per_hour(per_hour)] if per_hour else []) + (
            [mailers.per_day(per_day)] if per_day else [])
        eng.upsert_mailbox(m)


def launch(**kw):
    kw.setdefault("recipients", [
        mailers.Recipient("Ada <ada@example.com>", {"first_name": "Ada"}),
        ("bob@example.com", {"first_name": "Bob"}),
        "cy@example.com",
        mailers.Recipient("dee@example.com", {"first_name": "Dee"}),
        mailers.Recipient("ADA@example.com", {"first_name": "Twice"}),  # the same address
        mailers.Recipient("gone@example.com"),
    ])
    kw.setdefault("subject", "{{first_name|Hello}}, we launched")
    kw.setdefault("text", "Hi {{first_name|there}}.\n")
    return mailers.Campaign("launch", name="Launch", mailbox="rep1", **kw)


def test_start_progress_cancel(sim):
    eng, clock = sim
    capped(eng, per_hour=2)
    eng.suppress("gone@example.com")
    events = eng.events()
    info = eng.start_campaign(launch())
    assert (info.id, info.total, info.suppressed_at_start, info.actor) == ("launch", 5, 1, OPS.id)
    assert info.mailbox == "rep1" and not info.cancelled and info.started_at == MONDAY
    assert eng.find_campaign("launch") == info and eng.campaigns() == [info]
    # Started again: the same definition queues nobody twice.
    assert eng.start_campaign(launch()).total == 5

    eng.settle()
    p = eng.campaign_progress("launch")
    assert (p.total, p.sent, p.suppressed_at_start, p.waiting) == (5, 2, 1, 2)
    assert p.waiting_by_reason == {"cap": 2} and p.remaining == 2 and not p.finished
    assert p.next_due == MONDAY + dt.timedelta(hours=1)
    sent = eng.captured("cap")
    assert [c.mailbox for c in sent] == ["rep1", "rep1"]
    assert {c.text for c in sent} <= {"Hi Ada.\n", "Hi Bob.\n", "Hi there.\n", "Hi Dee.\n"}
    ev = events.get(10)
    while ev.type != "sent":
        ev = events.get(10)
    assert ev.campaign == "launch" and ev.sequence == "" and ev.mailbox == "rep1"

    assert eng.cancel_campaign("launch") == 2
    p = eng.campaign_progress("launch")
    assert (p.cancelled, p.remaining, p.cancelled_campaign, p.finished) == (2, 0, True, True)
    clock.advance(dt.timedelta(hours=2))
    eng.settle()
    assert len(eng.captured("cap")) == 2
    assert eng.find_campaign("launch").cancelled
    assert {"campaign.start", "campaign.cancel"} <= {r.action for r in eng.audit_log()}


def test_refusals_queue_nothing(sim):
    eng, _ = sim
    bad = launch(html="<p>Hi\n{{first_name</p>")
    with pytest.raises(mailers.TemplateError) as e:
        eng.start_campaign(bad)
    assert (e.value.part, e.value.line, e.value.column) == ("html", 2, 1)
    assert "line 2" in str(e.value)
    strict = launch(subject="{{first_name}}, we launched")
    with pytest.raises(mailers.MissingVariables) as e:
        eng.start_campaign(strict)
    assert e.value.missing == ["first_name"] and e.value.recipient == "cy@example.com"
    with pytest.raises(mailers.InvalidAddress) as e:
        eng.start_campaign(launch(recipients=["ok@example.com", "nope"]))
    assert "recipient 2" in str(e.value)
    with pytest.raises(mailers.UnknownPool):
        eng.start_campaign(mailers.Campaign("c2", ["a@example.com"], subject="s", text="t",
                                            pool="nope"))
    with pytest.raises(mailers.InvalidArgument):
        eng.start_campaign(launch(recipients=[]))
    with pytest.raises(mailers.InvalidArgument):
        eng.start_campaign(mailers.Campaign("bad id!", ["a@example.com"], subject="s",
                                            text="t", mailbox="rep1"))
    assert eng.campaigns() == [] and eng.queue_counts().waiting == 0
    with pytest.raises(mailers.UnknownCampaign):
        eng.campaign_progress("launch")
    with pytest.raises(mailers.UnknownCampaign):
        eng.cancel_campaign("launch")

    eng.start_campaign(launch())
    with pytest.raises(mailers.Duplicate):
        eng.start_campaign(launch(recipients=["someone-else@example.com"]))


def test_forecast_a_campaign_within_caps(sim):
    eng, _ = sim
    capped(eng, per_day=3)
    c = mailers.Campaign("big", [f"lead{i}@example.com" for i in range(10)], subject="s",
                         text="t", pool="sdr")
    plan = eng.forecast(campaign=c, horizon=dt.timedelta(days=7))
    assert plan.start == MONDAY and plan.end == MONDAY + 7 * DAY
    assert len(plan.sends) == 10 and plan.complete and plan.unsent == []
    assert {s.recipient for s in plan.sends} == {f"lead{i}@example.com" for i in range(10)}
    assert all(s.origin == "campaign:big" and s.step == 0 and not s.existing
               for s in plan.sends)
    assert [s.at for s in plan.sends] == sorted(s.at for s in plan.sends)
    # Three a day per mailbox: six on each of the first days, the rest on the last.
    for mb in ("rep1", "rep2"):
        times = [s.at for s in plan.sends if s.mailbox == mb]
        for t in times:
            assert sum(1 for u in times if t <= u < t + DAY) <= 3
    first_day = [s for s in plan.sends if s.at < MONDAY + DAY]
    assert len(first_day) == 6 and all(s.bound == "" for s in first_day)
    later = [s for s in plan.sends if s.at >= MONDAY + DAY]
    assert later and all(s.bound == "cap" for s in later)
    assert plan.last == max(s.at for s in plan.sends) and plan.last < MONDAY + 2 * DAY
    # Nothing was stored or sent.
    assert eng.campaigns() == [] and eng.captured("cap") == []

    short = eng.forecast(campaign=c, horizon=dt.timedelta(hours=12))
    assert len(short.sends) == 6 and not short.complete and short.last is not None
    assert len(short.unsent) == 4 and all(u.waiting and u.reason == "cap" for u in short.unsent)

    # Once started, ``follow`` forecasts what is left of it from the queue.
    eng.start_campaign(c)
    left = eng.forecast(horizon=dt.timedelta(days=7), follow="campaign:big")
    mine = [s for s in left.sends if s.origin == "campaign:big"]
    assert mine and all(s.existing for s in mine) and left.complete and left.unsent == []
    assert left.last is not None and left.last < MONDAY + 7 * DAY
    with pytest.raises(mailers.InvalidArgument):
        eng.forecast(follow="campaign:big", include_queue=False)


def test_forecast_a_sequence(sim):
    eng, _ = sim
    eng.upsert_sequence(outreach())
    plan = eng.forecast(sequence_id="outreach", contacts=[
        ("ada@acme.example", {"company": "Acme"}, "rep2"),
        mailers.Recipient("bob@bolt.example", {"company": "Bolt"})])
    assert plan.complete and len(plan.sends) == 6
    ada = [s for s in plan.sends if s.recipient == "ada@acme.example"]
    assert [(s.step, s.mailbox) for s in ada] == [(1, "rep2"), (2, "rep2"), (3, "founder")]
    assert [s.at for s in ada] == [MONDAY, MONDAY + 2 * DAY, MONDAY + 9 * DAY]
    assert eng.enrollments() == []
    with pytest.raises(mailers.MissingVariables) as e:
        eng.forecast(sequence_id="outreach", contacts=["cy@cyan.example"])
    assert e.value.missing == ["company"] and e.value.recipient == "cy@cyan.example"
    with pytest.raises(mailers.UnknownSequence):
        eng.forecast(sequence_id="nope", contacts=["cy@cyan.example"])


def test_async_campaign_and_enroll(db):
    async def main():
        eng = mailers.AsyncEngine.__new__(mailers.AsyncEngine)
        eng.sync, clock = await asyncio.to_thread(sim_engine, db)
        async with eng:
            await eng.upsert_sequence(outreach())
            stream = eng.events()
            e = await eng.enroll("outreach", "ada@acme.example", owner="rep1",
                                 variables={"company": "Acme"})
            assert e.state == "active"
            with pytest.raises(mailers.MissingVariables):
                await eng.enroll("outreach", "bob@bolt.example")
            info = await eng.start_campaign(mailers.Campaign(
                "async", ["x@example.com", "y@example.com"], subject="s", text="t",
                pool="sdr"))
            assert info.total == 2
            got = []
            async for ev in stream:
                if ev.type == "sent":
                    got.append(ev)
                if len(got) == 3:
                    break
            assert sorted((ev.sequence, ev.campaign) for ev in got) == [
                ("", "async"), ("", "async"), ("outreach", "")]
            p = await eng.campaign_progress("async")
            assert p.sent == 2 and p.finished
            assert (await eng.find_enrollment(e.id)).step == 1
            assert [x.id for x in await eng.enrollments(sequence_id="outreach")] == [e.id]
            plan = await eng.forecast(sequence_id="outreach", include_queue=False,
                                      contacts=[("cy@cyan.example", {"company": "Cyan"})])
            assert [s.step for s in plan.sends] == [1, 2, 3]
            with pytest.raises(mailers.UnknownCampaign):
                await eng.cancel_campaign("nope")

    asyncio.run(main())


def test_forecast_beside_a_queued_step(sim):
    eng, clock = sim
    eng.upsert_sequence(outreach())
    eng.enroll("outreach", "ada@acme.example", owner="rep1", variables={"company": "Acme"})
    eng.settle()
    assert eng.queue_counts().waiting == 1  # Ada's step 2
    plan = eng.forecast(sequence_id="outreach",
                        contacts=[("cy@cyan.example", {"company": "Cyan"})])
    assert [s.step for s in plan.sends if s.recipient == "cy@cyan.example"] == [1, 2, 3]


def test_two_engines_start_one_campaign_at_once(db):
    import concurrent.futures

    a, clock = sim_engine(db)
    with a, mailers.Engine(db, actor=OPS, clock=clock, queue_poll_interval=0.005) as b:
        b.add_provider("cap", "capture://capture")
        wait_until(lambda: b.find_pool("sdr"))  # through the change feed
        c = mailers.Campaign("twice", [f"lead{i}@example.com" for i in range(50)],
                             subject="s", text="t", pool="sdr")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            infos = list(pool.map(lambda e: e.start_campaign(c), [a, b]))
        assert [i.total for i in infos] == [50, 50]
        a.settle()
        p = b.campaign_progress("twice")
        assert (p.sent, p.remaining) == (50, 0)
        sent = a.captured("cap") + b.captured("cap")
        assert sorted(x.rcpt_to[0] for x in sent) == sorted(f"lead{i}@example.com"
                                                           for i in range(50))
