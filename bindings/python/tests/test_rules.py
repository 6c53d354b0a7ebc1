"""Daily counts, the soft-bounce threshold and pause rules (docs/rules.md), fed by
SendGrid webhooks for sends made through the capture transport."""

import asyncio
import datetime as dt
import json
import os
import typing
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import mailers
from conftest import MONDAY, OPS, setup_engine

CONNINFO = os.environ.get("MAILERS_TEST_PG", "")


def stores(tmp_path):
    yield "sqlite", mailers.SQLite(str(tmp_path / "workspace.db")), "default"
    if CONNINFO:
        yield ("postgres", mailers.Postgres(CONNINFO, schema="mailers_python_test"),
               f"py-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", "postgres"])
def rules_store(request, tmp_path):
    found = {name: (store, ws) for name, store, ws in stores(tmp_path)}
    if request.param not in found:
        if os.environ.get("MAILERS_REQUIRE_PG") == "1":
            raise RuntimeError("MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is not set")
        pytest.skip("MAILERS_TEST_PG is not set")
    return found[request.param]


@pytest.fixture
def rules_engine(rules_store):
    store, ws = rules_store
    clock = mailers.ManualClock(MONDAY)
    with mailers.Engine(store, workspace=ws, actor=OPS, clock=clock) as eng:
        yield setup_engine(eng), clock


def sendgrid(*events):
    """A SendGrid batch: (kind, email, send_id) with kind "bounce" (hard),
    "blocked" (soft) or "delivered"."""
    batch = []
    for kind, email, send_id in events:
        e = {"email": email, "timestamp": int(MONDAY.timestamp()), "sg_event_id": uuid.uuid4().hex,
             "reason": "550 5.1.1 no such user", "status": "5.1.1", "mailers_send_id": send_id}
        if kind in ("bounce", "blocked"):
            e.update(event="bounce", type=kind)
        else:
            e["event"] = kind
        batch.append(e)
    return json.dumps(batch)


def ingest(engine, *events):
    r = engine.ingest_webhook("sendgrid", sendgrid(*events), verify=False)
    assert r.http_status == 200, r.reason
    return r


def test_counts_rule_fires_resume_with_reason_and_grace(rules_engine):
    engine, clock = rules_engine
    engine.put_pause_rule(mailers.PauseRule("bounces", metric="bounces", max_rate=0.2,
                                            min_volume=5, grace_days=3))
    assert engine.pause_rules() == [mailers.PauseRule("bounces", min_volume=5, max_rate=0.2,
                                                      grace_days=3)]
    sent = [engine.send(f"p{i}@prospect.example", pool="out", subject="Hi", text="Hello")
            for i in range(5)]
    with engine.events() as stream:
        ingest(engine, ("bounce", "p0@prospect.example", sent[0].send_id),
               ("bounce", "p1@prospect.example", sent[1].send_id),
               ("delivered", "p2@prospect.example", sent[2].send_id))
        seen = stream.get(5)
        while seen.type != "auto_paused":
            seen = stream.get(5)
    assert seen.mailbox == "rep1" and "bounces" in seen.detail
    assert engine.is_paused("mailbox", "rep1")
    assert [(p.id, p.actor) for p in engine.pauses()] == [("rep1", "rule:bounces")]
    assert [r.action for r in engine.audit_log()].count("rule.fired") == 1

    monday = MONDAY.date()
    for scope, id in (("mailbox", "rep1"), ("pool", "out"), ("workspace", "")):
        days = engine.daily_counts(scope, id, first=monday - dt.timedelta(days=1), last=MONDAY)
        assert [d.day for d in days] == [monday - dt.timedelta(days=1), monday]
        assert days[0] == mailers.DailyCount(monday - dt.timedelta(days=1))
        assert (days[1].sent, days[1].bounced_hard, days[1].delivered) == (5, 2, 1), scope
    assert engine.daily_counts("mailbox", "rep2", first=monday, last=monday)[0].sent == 0

    engine.resume("mailbox", "rep1", reason="list cleaned", actor=mailers.Principal("ana", "Ana"))
    resume = engine.audit_log()[-1]
    assert (resume.action, resume.actor) == ("resume", "ana") and "list cleaned" in resume.after
    assert not engine.is_paused("mailbox", "rep1")
    clock.advance(dt.timedelta(days=2))
    assert engine.check_pause_rules() == []  # within the 3 days of grace
    clock.advance(dt.timedelta(days=2))
    fired = engine.check_pause_rules()
    assert [(f.rule, f.scope, f.target, f.count, f.volume) for f in fired] == \
        [("bounces", "mailbox", "rep1", 2, 5)]
    assert fired[0].rate == pytest.approx(0.4) and fired[0].last_day == monday + dt.timedelta(days=4)
    assert engine.is_paused("mailbox", "rep1")
    assert engine.remove_pause_rule("bounces") and engine.pause_rules() == []


def test_soft_bounces_past_the_threshold_suppress(rules_engine):
    engine, _ = rules_engine
    assert engine.soft_bounce_policy() == mailers.SoftBouncePolicy(0, 14)
    engine.set_soft_bounce_policy(mailers.SoftBouncePolicy(threshold=2, window_days=7))
    assert engine.soft_bounce_policy() == mailers.SoftBouncePolicy(2, 7)
    sent = engine.send("full@prospect.example", pool="out", subject="Hi", text="Hello")
    ingest(engine, ("blocked", "full@prospect.example", sent.send_id))
    assert not engine.is_suppressed("full@prospect.example")
    ingest(engine, ("blocked", "full@prospect.example", sent.send_id))
    entry = engine.find_suppression("full@prospect.example")
    assert (entry.reason, entry.source) == ("hard_bounce", "soft-bounce-threshold")
    day = engine.daily_counts("mailbox", "rep1", first=MONDAY, last=MONDAY)[0]
    assert (day.sent, day.bounced_soft) == (1, 2)


def test_two_engines_share_rules_counts_and_the_policy(rules_store):
    store, ws = rules_store
    clock = mailers.ManualClock(MONDAY)
    with mailers.Engine(store, workspace=ws, actor=OPS, clock=clock) as a, \
            mailers.Engine(store, workspace=ws, actor=OPS, clock=clock) as b:
        setup_engine(a)
        b.add_provider("cap", "capture://capture")
        a.put_pause_rule(mailers.PauseRule("hard", metric="hard_bounces", max_rate=0.5,
                                           min_volume=2))
        a.set_soft_bounce_policy(mailers.SoftBouncePolicy(4))
        assert [r.id for r in b.pause_rules()] == ["hard"]
        assert b.soft_bounce_policy().threshold == 4
        sent = [a.send(f"q{i}@prospect.example", pool="out", subject="Hi", text="Hello")
                for i in range(2)]
        # Delivered to both engines at once: applied, counted and fired once.
        body = sendgrid(("bounce", "q0@prospect.example", sent[0].send_id))
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(
                lambda e: e.ingest_webhook("sendgrid", body, verify=False), (a, b)))
        assert sorted(r.duplicates for r in results) == [0, 1]
        day = b.daily_counts("mailbox", "rep1", first=MONDAY, last=MONDAY)[0]
        assert (day.sent, day.bounced_hard) == (2, 1)
        assert a.is_paused("mailbox", "rep1")
        assert [r.action for r in b.audit_log()].count("rule.fired") == 1
        assert a.check_pause_rules() == [] and b.check_pause_rules() == []


def test_bad_input_is_refused_and_changes_nothing(engine):
    engine.put_pause_rule(mailers.bounce_rate_preset("kept"))
    ep = engine.put_webhook_endpoint(mailers.WebhookEndpoint("ops", "https://ops.example/hook",
                                                             event_types=["auto_paused"]))
    assert ep.event_types == ["auto_paused"]
    every = list(typing.get_args(mailers.EventType))  # each a name the engine knows
    assert engine.put_webhook_endpoint(mailers.WebhookEndpoint(
        "all", "https://ops.example/all", event_types=every)).event_types == every
    before = (engine.pause_rules(), engine.soft_bounce_policy(), len(engine.audit_log()))
    for bad in (mailers.SoftBouncePolicy(threshold=-1), mailers.SoftBouncePolicy(1001),
                mailers.SoftBouncePolicy(3, window_days=0)):
        with pytest.raises(mailers.InvalidArgument):
            engine.set_soft_bounce_policy(bad)
    for bad in (mailers.PauseRule("x", scope="galaxy"), mailers.PauseRule("x", metric="joy"),
                mailers.PauseRule("bad id!"), mailers.PauseRule("x", max_rate=0),
                mailers.PauseRule("x", max_rate=1.5), mailers.PauseRule("x", window_days=366),
                mailers.PauseRule("x", grace_days=-1), mailers.PauseRule("kept", min_volume=-5),
                mailers.PauseRule("x", scope="workspace", target="default")):
        with pytest.raises(mailers.InvalidArgument):
            engine.put_pause_rule(bad)
    with pytest.raises(mailers.InvalidAddress):
        engine.put_pause_rule(mailers.PauseRule("x", scope="sender_domain", target="not a domain"))
    with pytest.raises(mailers.InvalidArgument):
        engine.daily_counts("galaxy", first=MONDAY, last=MONDAY)
    with pytest.raises(mailers.InvalidArgument):
        engine.daily_counts("mailbox", "rep1", first=MONDAY, last=MONDAY - dt.timedelta(days=1))
    with pytest.raises(mailers.InvalidArgument):
        engine.resume("galaxy", "x", reason="no")
    with pytest.raises(mailers.InvalidArgument):
        mailers.complaint_rate_preset("c", scope="galaxy")
    assert not engine.remove_pause_rule("missing")
    assert (engine.pause_rules(), engine.soft_bounce_policy(), len(engine.audit_log())) == before


def test_presets_and_async_api(db):
    assert mailers.bounce_rate_preset("b") == mailers.PauseRule(
        "b", "mailbox", "", "bounces", 28, 0, 0.02, 20, 7)
    c = mailers.complaint_rate_preset("c")
    assert (c.scope, c.metric, c.max_rate, c.window_days, c.min_volume) == \
        ("sender_domain", "complaints", 0.003, 7, 1000)

    async def main():
        async with await mailers.AsyncEngine.open(db, actor=OPS) as eng:
            await eng.put_pause_rule(mailers.complaint_rate_preset("gmail", "workspace"))
            assert [r.id for r in await eng.pause_rules()] == ["gmail"]
            await eng.set_soft_bounce_policy(mailers.SoftBouncePolicy(3))
            assert (await eng.soft_bounce_policy()).threshold == 3
            assert await eng.check_pause_rules() == []
            await eng.pause(reason="audit")
            await eng.resume(reason="done")
            assert not await eng.is_paused()
            days = await eng.daily_counts("workspace", first=MONDAY.date(), last=MONDAY.date())
            assert days == [mailers.DailyCount(MONDAY.date())]
            assert await eng.remove_pause_rule("gmail")

    asyncio.run(main())
