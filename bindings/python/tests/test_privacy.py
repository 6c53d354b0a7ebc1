"""Erasure, export and retention (docs/privacy.md)."""

import asyncio
import datetime as dt

import pytest

import mailers
from conftest import MONDAY, OPS, setup_engine


def last_seq(engine):
    return engine.audit_log()[-1].seq


def test_erase_person_keeps_the_person_suppressed(engine):
    engine.send("Ada <ada@example.com>", pool="out", subject="s", text="t",
                idempotency_key="crm:ada@example.com")
    engine.enqueue("ada@example.com", pool="out", subject="later", text="t",
                   not_before=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
    engine.suppress("ada@example.com", reason="unsubscribe")

    r = engine.erase_person("ada@example.com")
    assert isinstance(r, mailers.ErasureReport)
    assert r.hash.startswith("erased:") and "ada" not in r.hash
    assert r.was_suppressed
    assert r.erased.sends == 1 and r.erased.queued == 1 and r.erased.queue_cancelled == 1
    assert r.erased.suppression_rows >= 1
    assert r.audit_seq == last_seq(engine)
    record = engine.audit_log(r.audit_seq)[0]
    assert record.action == "person.erase" and "ada@example.com" not in repr(record)
    assert r.at.tzinfo is not None

    assert engine.is_suppressed("ada@example.com")
    with pytest.raises(mailers.Suppressed):
        engine.send("ada@example.com", pool="out", subject="s", text="t")
    engine.verify_audit()

    again = engine.erase_person("ada@example.com")
    assert again.hash == r.hash and again.erased == mailers.ErasureCounts()


def test_erase_person_refuses_a_bad_address_and_changes_nothing(engine):
    before = last_seq(engine)
    with pytest.raises(mailers.InvalidAddress):
        engine.erase_person("not an address")
    with pytest.raises(mailers.InvalidAddress):
        engine.export_person("not an address")
    assert last_seq(engine) == before


def test_export_person_returns_what_is_held(engine):
    engine.send("bob@example.com", pool="out", subject="s", text="t")
    engine.suppress("bob@example.com", reason="complaint")
    doc = engine.export_person("Bob@Example.com")
    assert doc["address"].lower() == "bob@example.com"
    assert doc["suppressed"] is True
    assert len(doc["sends"]) == 1
    for key in ("suppression", "suppression_history", "events", "enrollments", "queued", "audit"):
        assert key in doc
    assert engine.audit_log()[-1].action == "person.export"


def test_purge_retained_forgets_old_sends(db):
    clock = mailers.ManualClock(MONDAY)
    with mailers.Engine(db, actor=OPS, clock=clock) as eng:
        setup_engine(eng)
        eng.send("old@example.com", pool="out", subject="s", text="t", idempotency_key="k1")
        clock.advance(dt.timedelta(days=10))
        eng.send("new@example.com", pool="out", subject="s", text="t")

        before = last_seq(eng)
        with pytest.raises(mailers.InvalidArgument):
            eng.purge_retained(mailers.RetentionPolicy(sends=dt.timedelta(days=7)))
        with pytest.raises(mailers.InvalidArgument):
            eng.purge_retained(mailers.RetentionPolicy(sends=-1))
        with pytest.raises(mailers.InvalidArgument):  # under the longest rule window
            eng.purge_retained(mailers.RetentionPolicy(counts=dt.timedelta(days=30)))
        assert last_seq(eng) == before

        kept = eng.purge_retained(mailers.RetentionPolicy())  # 0 keeps everything
        assert (kept.sends, kept.webhook_deliveries) == (0, 0)

        r = eng.purge_retained(mailers.RetentionPolicy(sends=dt.timedelta(days=8),
                                                       webhook_deliveries=dt.timedelta(days=30)))
        assert isinstance(r, mailers.RetentionReport)
        assert r.sends == 1 and r.webhook_deliveries == 0
        assert r.at == clock.now()
        assert eng.audit_log(r.audit_seq)[0].action == "retention.purge"
        assert r.audit_records == 0 and r.anchor_seq == 0 and r.counts == 0
        # Ten days of counts are all younger than a year: nothing goes.
        c = eng.purge_retained(mailers.RetentionPolicy(counts=dt.timedelta(days=365)))
        assert c.counts == 0
        today = clock.now().date()
        days = eng.daily_counts("workspace", first=today - dt.timedelta(days=11), last=today)
        assert sum(d.sent for d in days) == 2
        # Audit records older than 8 days go; the chain still verifies from its anchor.
        a = eng.purge_retained(mailers.RetentionPolicy(audit=dt.timedelta(days=8)))
        assert a.audit_records > 0 and a.anchor_seq == a.audit_records + 1
        assert eng.audit_log()[0].seq == a.anchor_seq
        eng.verify_audit()
        # The key was forgotten with its row: the same key is a new send now.
        again = eng.send("old@example.com", pool="out", subject="s", text="t",
                         idempotency_key="k1")
        assert not again.duplicate


def test_async_erasure_export_and_purge(db):
    async def main():
        async with mailers.AsyncEngine(db, actor=OPS) as eng:
            await eng.add_provider("cap", "capture://capture")
            await eng.upsert_mailbox(mailers.Mailbox("rep1", "rep1@brand.com", "cap"))
            await eng.send("cy@example.com", mailbox="rep1", subject="s", text="t")
            doc = await eng.export_person("cy@example.com")
            assert len(doc["sends"]) == 1
            r = await eng.erase_person("cy@example.com")
            assert r.erased.sends == 1
            assert await eng.is_suppressed("cy@example.com")
            p = await eng.purge_retained(mailers.RetentionPolicy(sends=dt.timedelta(days=30)))
            assert p.sends == 0

    asyncio.run(main())
