"""Configuration objects: round trips through the engine, validation, presets, restart."""

import datetime as dt
import logging
import time

import pytest

import mailers
from conftest import OPS, setup_engine


def test_mailbox_round_trip(engine):
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    m = mailers.Mailbox(
        "rep2", "Blair Public <blair@brand.com>", "cap",
        limits=[mailers.per_day(40), mailers.per_hour(8, "calendar")],
        warmup=mailers.Warmup(5, 5, 50, start), time_zone="Europe/Berlin",
        window=mailers.SendWindow(9, 17, mailers.WEEKDAYS_MON_FRI),
        min_gap=dt.timedelta(minutes=3), jitter=60, weight=2, priority=-1,
        breaker=mailers.Breaker(3, dt.timedelta(minutes=1), 600))
    engine.upsert_mailbox(m)
    assert engine.find_mailbox("rep2") == m
    assert {x.id for x in engine.mailboxes()} == {"rep1", "rep2"}
    assert engine.find_mailbox("nobody") is None


def test_pool_and_quota_round_trip(engine):
    engine.upsert_mailbox(mailers.Mailbox("rep2", "rep2@brand.com", "cap"))
    p = mailers.Pool("weighted", ["rep1", "rep2"], policy="weighted", max_attempts=2,
                     sticky_sender=True)
    engine.upsert_pool(p)
    assert engine.find_pool("weighted") == p
    assert [x.id for x in engine.pools()] == ["out", "weighted"]
    engine.remove_pool("weighted")
    assert engine.find_pool("weighted") is None

    q = mailers.Quota("recipient_domain", "gmail.com", [mailers.per_hour(20)], "UTC")
    engine.set_quota(q)
    assert engine.quotas() == [q]
    engine.remove_quota("recipient_domain", "gmail.com")
    assert engine.quotas() == []


def test_preset_is_a_ceiling():
    m = mailers.Mailbox("g", "g@brand.com", "cap", limits=[mailers.per_day(40)])
    applied = m.apply("google_workspace")
    assert mailers.per_day(40) in applied.limits
    assert applied.max_recipients_per_message == 100
    with pytest.raises(mailers.InvalidArgument):
        m.apply("no-such-preset")


@pytest.mark.parametrize("bad, error", [
    (dict(address="not an address"), mailers.InvalidAddress),
    (dict(time_zone="Mars/Olympus"), mailers.UnknownTimeZone),
    (dict(weight=0), mailers.InvalidArgument),
    (dict(provider=""), mailers.InvalidArgument),
    (dict(window=mailers.SendWindow(25, 3)), mailers.InvalidArgument),
])
def test_bad_mailbox_is_refused_and_changes_nothing(engine, bad, error):
    before = engine.mailboxes()
    audit = len(engine.audit_log())
    fields = dict(id="bad", address="bad@brand.com", provider="cap")
    fields.update(bad)
    with pytest.raises(error) as e:
        engine.upsert_mailbox(mailers.Mailbox(**fields))
    assert isinstance(e.value, mailers.Error) and e.value.code
    assert engine.mailboxes() == before
    assert len(engine.audit_log()) == audit


def test_unknown_enum_names_are_refused(engine):
    with pytest.raises(mailers.InvalidArgument):
        engine.upsert_pool(mailers.Pool("p", ["rep1"], policy="random"))
    with pytest.raises(mailers.InvalidArgument):
        engine.pause("galaxy", "x")
    with pytest.raises(mailers.InvalidArgument):
        engine.suppress("a@example.com", reason="because")


def test_provider_dsn_errors_name_the_part_and_hide_secrets(engine, monkeypatch):
    with pytest.raises(mailers.InvalidArgument) as e:
        engine.add_provider("x", "carrier-pigeon://coop")
    assert "supported" in str(e.value)
    with pytest.raises(mailers.Error) as e:
        engine.add_provider("y", "smtp://user:env:MAILERS_PY_TEST_MISSING@127.0.0.1:1")
    assert "MAILERS_PY_TEST_MISSING" in str(e.value)
    monkeypatch.setenv("MAILERS_PY_TEST_PASS", "s3cret-value")
    engine.add_provider("z", "smtp://user:env:MAILERS_PY_TEST_PASS@127.0.0.1:1?tls=none")
    record = engine.audit_log()[-1]
    assert record.action == "provider.add" and record.resource_id == "z"
    assert "s3cret-value" not in record.after


def test_restart_on_the_same_file_keeps_state(db):
    with mailers.Engine(db, actor=OPS) as eng:
        setup_engine(eng)
        eng.suppress("gone@example.com", reason="unsubscribe")
        first = eng.send("ada@example.com", pool="out", subject="s", text="t",
                         idempotency_key="k1")
        eng.pause("mailbox", "rep1", reason="holiday")
        head = eng.audit_checkpoint()
    with mailers.Engine(db, actor=OPS) as eng:
        eng.add_provider("cap", "capture://capture")  # providers are runtime objects
        assert eng.find_mailbox("rep1") is not None
        assert eng.find_pool("out") == mailers.Pool("out", ["rep1"])
        assert eng.is_suppressed("GONE@example.com")
        assert eng.is_paused("mailbox", "rep1")
        eng.resume("mailbox", "rep1")
        with pytest.raises(mailers.Duplicate) as e:
            eng.send("ada@example.com", pool="out", subject="s", text="t", idempotency_key="k1")
        assert e.value.result.duplicate and e.value.result.send_id == first.send_id
        assert eng.captured("cap") == []
        eng.verify_audit(head)


def test_store_modes(tmp_path):
    path = str(tmp_path / "w.db")
    with pytest.raises(mailers.StoreMissing):
        mailers.Engine(mailers.SQLite(path, mode="existing"))
    mailers.Engine(mailers.SQLite(path, mode="create")).close()
    with pytest.raises(mailers.StoreExists):
        mailers.Engine(mailers.SQLite(path, mode="create"))
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(mailers.StoreCorrupt):
        mailers.Engine(mailers.SQLite(str(tmp_path / "junk.db")))


def test_normalise_address():
    assert mailers.normalise_address("  Ada <ADA+x@Example.COM> ") == "ada+x@example.com"
    assert mailers.normalise_address("ada+x@example.com", fold_plus_tags=True) == "ada@example.com"
    with pytest.raises(mailers.InvalidAddress):
        mailers.normalise_address("nope")


def test_library_log_lines_reach_the_logging_module(db, caplog):
    with caplog.at_level(logging.WARNING, logger="mailers"):
        with mailers.Engine(db, actor=OPS) as eng:
            eng.upsert_mailbox(mailers.Mailbox("m", "m@brand.com", "not-registered-here"))
            eng.flush()
            for _ in range(1000):  # up to 10 s on a loaded machine
                if any("not-registered-here" in r.getMessage() for r in caplog.records):
                    break
                time.sleep(0.01)
    assert any(r.levelno == logging.WARNING and "not-registered-here" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(mailers.InvalidArgument):
        mailers.Engine(db, log_level="loud")


def test_native_stubs_name_every_native_call():
    import ast
    import pathlib

    from mailers import _mailers

    stub = ast.parse((pathlib.Path(mailers.__file__).parent / "_mailers.pyi").read_text())

    def names(body):
        return {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}

    classes = {n.name: names(n.body) for n in stub.body if isinstance(n, ast.ClassDef)}
    public = {n for n in dir(_mailers) if not n.startswith("__")} - {"version"}
    assert public == names(stub.body)
    for cls, declared in classes.items():
        native = {n for n in dir(getattr(_mailers, cls)) if not n.startswith("_")}
        assert native == declared - {"__init__"}, cls
