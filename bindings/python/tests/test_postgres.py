"""The same engine on PostgreSQL (MAILERS_TEST_PG); skipped without it unless
MAILERS_REQUIRE_PG=1."""

import asyncio
import datetime as dt
import os
import uuid

import pytest

import mailers
from conftest import OPS, setup_engine, wait_until

CONNINFO = os.environ.get("MAILERS_TEST_PG", "")
if not CONNINFO:
    if os.environ.get("MAILERS_REQUIRE_PG") == "1":
        raise RuntimeError("MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is not set")
    pytest.skip("MAILERS_TEST_PG is not set", allow_module_level=True)


@pytest.fixture
def pg():
    # One schema for these tests, a workspace of its own for each.
    return mailers.Postgres(CONNINFO, schema="mailers_python_test"), f"py-{uuid.uuid4().hex[:12]}"


def test_send_suppress_restart_on_postgres(pg, monkeypatch):
    store, ws = pg
    with mailers.Engine(store, workspace=ws, actor=OPS) as eng:
        setup_engine(eng)
        r = eng.send("ada@example.com", pool="out", subject="s", text="t", idempotency_key="a")
        eng.suppress("gone@example.com")
        with pytest.raises(mailers.Suppressed):
            eng.send("gone@example.com", pool="out", subject="s", text="t")
        eng.verify_audit()
    # The connection string by reference, as DSN secrets are given.
    monkeypatch.setenv("MAILERS_PY_TEST_CONNINFO", CONNINFO)
    ref = mailers.Postgres("env:MAILERS_PY_TEST_CONNINFO", schema="mailers_python_test",
                           mode="existing")
    with mailers.Engine(ref, workspace=ws, actor=OPS) as eng:
        eng.add_provider("cap", "capture://capture")
        assert eng.is_suppressed("gone@example.com")
        with pytest.raises(mailers.Duplicate) as e:
            eng.send("ada@example.com", pool="out", subject="s", text="t", idempotency_key="a")
        assert e.value.result.send_id == r.send_id


def test_two_engines_share_a_workspace(pg):
    store, ws = pg

    async def main():
        async with mailers.AsyncEngine(store, workspace=ws, actor=OPS) as a, \
                mailers.AsyncEngine(store, workspace=ws, actor=OPS) as b:
            setup_engine(a.sync)
            b.sync.add_provider("cap", "capture://capture")
            await a.flush()
            for _ in range(100):  # b learns the configuration through the change feed
                if b.sync.find_pool("out") is not None:
                    break
                await asyncio.sleep(0.05)
            results = await asyncio.gather(
                *(e.send(f"l{i}@example.com", pool="out", subject="s", text="t",
                         idempotency_key=f"k{i % 50}")
                  for i, e in enumerate([a, b] * 50)),
                return_exceptions=True)
            ok = [r for r in results if isinstance(r, mailers.SendResult)]
            dup = [r for r in results if isinstance(r, mailers.Duplicate)]
            assert len(ok) == 50 and len(dup) == 50, results
            assert len(a.captured("cap")) + len(b.captured("cap")) == 50

    asyncio.run(main())


def test_unreachable_server_is_a_store_error():
    with pytest.raises(mailers.StoreError):
        mailers.Engine(mailers.Postgres("host=127.0.0.1 port=1 dbname=x user=x "
                                        "connect_timeout=1", mode="existing"))


def test_sequence_and_campaign_on_postgres(pg):
    from conftest import MONDAY, sim_engine
    from test_sequences import outreach

    store, ws = pg
    eng, clock = sim_engine(store, workspace=ws)
    with eng:
        eng.upsert_sequence(outreach())
        e = eng.enroll("outreach", "ada@acme.example", owner="rep1",
                       variables={"company": "Acme"})
        eng.start_campaign(mailers.Campaign("pg", ["x@example.com", "y@example.com"],
                                            subject="s", text="t", pool="sdr"))
        with pytest.raises(mailers.MissingVariables):
            eng.enroll("outreach", "bob@bolt.example")
        due = eng.settle()
        assert due == MONDAY + dt.timedelta(days=2)
        assert eng.campaign_progress("pg").sent == 2
        assert eng.find_enrollment(e.id).step == 1
        clock.set(due)
        eng.settle()
        [c1, c2] = [c for c in eng.captured("cap") if c.rcpt_to == ["ada@acme.example"]]
        assert c2.subject == "Re: " + c1.subject and c2.mailbox == c1.mailbox == "rep1"
    # Another engine of the workspace reads the same state from the store.
    with mailers.Engine(store, workspace=ws, actor=OPS, drain_queue=False) as other:
        assert other.find_enrollment(e.id).step == 2
        assert other.campaign_progress("pg").finished
        assert other.find_sequence("outreach") == outreach()


def test_erasure_reaches_every_engine_on_postgres(pg):
    store, ws = pg
    with mailers.Engine(store, workspace=ws, actor=OPS) as a, \
            mailers.Engine(store, workspace=ws, actor=OPS) as b:
        setup_engine(a)
        b.add_provider("cap", "capture://capture")
        a.send("dee@example.com", pool="out", subject="s", text="t")
        assert len(b.export_person("dee@example.com")["sends"]) == 1
        r = a.erase_person("dee@example.com")
        assert r.erased.sends == 1
        # erase_person returns once every engine of the workspace holds the hash.
        assert b.is_suppressed("dee@example.com")
        assert b.export_person("dee@example.com")["suppressed"] is True
        assert b.erase_person("dee@example.com").hash == r.hash
        p = b.purge_retained(mailers.RetentionPolicy(sends=dt.timedelta(days=8)))
        assert p.sends == 0
        a.verify_audit()


def test_stored_provider_reaches_every_engine_on_postgres(pg, monkeypatch):
    store, ws = pg
    monkeypatch.setenv("MAILERS_PY_TEST_SMTP_PASSWORD", "s3cret")
    dsn = "smtp://apikey:env:MAILERS_PY_TEST_SMTP_PASSWORD@127.0.0.1:2525?tls=none"
    with mailers.Engine(store, workspace=ws, actor=OPS) as a, \
            mailers.Engine(store, workspace=ws, actor=OPS, queue_poll_interval=0.02) as b:
        with pytest.raises(mailers.InvalidArgument):
            a.save_provider("relay", "smtp://apikey:hunter2@127.0.0.1:2525?tls=none")
        a.save_provider("relay", dsn)
        # b, already running, learns it through the change feed.
        wait_until(lambda: b.stored_providers())
        assert [(p.id, p.dsn, p.active) for p in b.stored_providers()] == [("relay", dsn, True)]
        a.upsert_mailbox(mailers.Mailbox("rep1", "rep1@brand.com", "relay"))
        wait_until(lambda: b.find_mailbox("rep1"))
        with pytest.raises(mailers.InvalidArgument):
            b.remove_provider("relay")
        a.retire_mailbox("rep1")
        wait_until(lambda: b.find_mailbox("rep1").state == "retired")
        b.remove_provider("relay")
        assert b.stored_providers() == []
        wait_until(lambda: not a.stored_providers())
