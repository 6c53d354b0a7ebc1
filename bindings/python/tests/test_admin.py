"""Access-control reads and changes, the queue listing and enqueue_and_wait,
latencies, cancel(), suppression_rules(), and webhooks parsed and applied in
two steps."""

import asyncio
import datetime as dt
import json

import pytest

import mailers
from conftest import setup_engine


def last_seq(engine):
    return engine.audit_log()[-1].seq


def test_access_control_roles_and_grants(engine):
    engine.put_role("sender", ["send", "enqueue"])
    engine.put_role("admin", ["manage_access"])
    engine.grant_access("bob", "sender", "pool", "out")
    engine.grant_access("ops@brand.com", "admin")
    policy = engine.access_control()
    assert policy.enabled is False
    assert [r.id for r in policy.roles] == ["admin", "sender"]
    assert policy.roles[1].permissions == ["send", "enqueue"]
    assert mailers.AccessGrant("bob", "sender", "pool", "out") in policy.grants

    engine.set_access_control(True)
    assert engine.access_control().enabled

    engine.revoke_access("bob", "sender", "pool", "out")
    with pytest.raises(mailers.NotFound):
        engine.revoke_access("bob", "sender", "pool", "out")
    engine.grant_access("carol", "sender")
    engine.remove_role("sender")
    policy = engine.access_control()
    assert [r.id for r in policy.roles] == ["admin"]
    assert all(g.role != "sender" for g in policy.grants)
    before = last_seq(engine)
    with pytest.raises(mailers.NotFound):
        engine.remove_role("sender")
    assert last_seq(engine) == before


def test_queued_lists_items_by_filter(engine):
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    ids = [engine.enqueue(f"q{i}@example.com", pool="out", subject="s", text="t",
                          not_before=later, origin="crm" if i < 2 else "api")
           for i in range(3)]
    assert [q.id for q in engine.queued()] == ids
    assert [q.id for q in engine.queued(origin_prefix="crm")] == ids[:2]
    assert [q.id for q in engine.queued(after_id=ids[0], limit=1)] == [ids[1]]
    engine.cancel_queued(ids[2])
    assert [q.id for q in engine.queued(state="cancelled")] == [ids[2]]
    assert engine.find_queued(ids[0]).state == "waiting"
    with pytest.raises(mailers.InvalidArgument):
        engine.queued(state="lost")
    with pytest.raises(mailers.InvalidArgument):
        engine.queued(limit=-1)


def test_latencies_measure_each_stage(engine):
    assert engine.latencies().total.total() == 0
    assert engine.latencies().total.quantile_us(0.5) == 0
    for i in range(3):
        engine.send(f"l{i}@example.com", pool="out", subject="s", text="t")
    lat = engine.latencies()
    assert lat.total.total() == 3 and len(lat.total.counts) == 32
    assert lat.handoff.total() == 3 and lat.total.sum_us > 0
    assert lat.total.quantile_us(0.5) >= 2


def test_cancel_stops_sending_but_not_configuration(engine):
    engine.cancel()
    with pytest.raises(mailers.Aborted):
        engine.send("z@example.com", pool="out", subject="s", text="t")
    engine.suppress("z@example.com")
    assert engine.is_suppressed("z@example.com")


def test_parse_then_apply_webhook(engine):
    r = engine.send("hb@example.com", pool="out", subject="s", text="t")
    body = json.dumps([{"event": "bounce", "type": "bounce", "email": "hb@example.com",
                        "timestamp": 1_790_000_000, "sg_event_id": "e1",
                        "mailers_send_id": r.send_id}])
    parsed = mailers.parse_webhook("sendgrid", body, verify=False)
    assert parsed.accepted and parsed.outcome == "events"
    assert [(e.type, e.recipient) for e in parsed.events] == [("bounced", "hb@example.com")]
    assert not engine.is_suppressed("hb@example.com")  # parsing applies nothing

    applied = engine.apply_webhook(parsed)
    assert applied.http_status == 200 and applied.suppressed == 1
    assert applied.events[0].mailbox == "rep1"  # filled in from the ledger
    assert engine.is_suppressed("hb@example.com")
    assert engine.apply_webhook(parsed).duplicates == 1

    refused = mailers.parse_webhook("sendgrid", body)  # verified, and no key given
    assert not refused.accepted and refused.outcome == "rejected"
    assert engine.apply_webhook(refused).suppressed == 0
    with pytest.raises(mailers.InvalidArgument):
        mailers.parse_webhook("pigeon", body)


def test_suppression_rules(engine, tmp_path):
    assert engine.suppression_rules() == {"fold_plus_tags": False, "fold_gmail_dots": False}
    with mailers.Engine(mailers.SQLite(str(tmp_path / "fold.db")), fold_plus_tags=True) as eng:
        assert eng.suppression_rules() == {"fold_plus_tags": True, "fold_gmail_dots": False}


def test_enqueue_and_wait_returns_the_item_once_it_ended(engine):
    item = engine.enqueue_and_wait("w@example.com", pool="out", subject="s", text="t",
                                   idempotency_key="w1")
    assert item.state == "done" and item.send_id > 0
    assert [c.rcpt_to for c in engine.captured("cap")] == [["w@example.com"]]
    # The same key: the item that already ended.
    assert engine.enqueue_and_wait("w@example.com", pool="out", subject="s", text="t",
                                   idempotency_key="w1").id == item.id
    engine.suppress("no@example.com")
    with pytest.raises(mailers.Suppressed):
        engine.enqueue_and_wait("no@example.com", pool="out", subject="s", text="t")


def test_async_enqueue_and_wait(tmp_path):
    async def main():
        a = await mailers.AsyncEngine.open(mailers.SQLite(str(tmp_path / "a.db")))
        await asyncio.to_thread(setup_engine, a.sync)
        items = await asyncio.gather(*(a.enqueue_and_wait(f"a{i}@example.com", pool="out",
                                                          subject="s", text="t")
                                       for i in range(5)))
        assert {i.state for i in items} == {"done"}
        with pytest.raises(mailers.UnknownPool):
            await a.enqueue_and_wait("x@example.com", pool="nope", subject="s", text="t")
        await a.close()

    asyncio.run(main())
