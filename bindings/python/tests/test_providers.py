"""Stored providers (save, list, remove, shared by the engines of a
workspace) and provider checks, which send nothing."""

import socket

import pytest

import mailers
from conftest import OPS


def closed_port():
    """A 127.0.0.1 port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("MAILERS_PY_TEST_SMTP_PASSWORD", "s3cret")
    return "env:MAILERS_PY_TEST_SMTP_PASSWORD"


def test_saved_provider_is_listed_and_shared(db, secret):
    dsn = f"smtp://apikey:{secret}@127.0.0.1:2525?tls=none"
    with mailers.Engine(db, actor=OPS) as a:
        a.save_provider("relay", dsn)
        [p] = a.stored_providers()
        assert (p.id, p.dsn, p.active) == ("relay", dsn, True)
        assert p.created_at == p.updated_at and p.created_at.tzinfo is not None
        # A second engine on the workspace builds it from the store.
        with mailers.Engine(db, actor=OPS) as b:
            assert [(q.id, q.dsn, q.active) for q in b.stored_providers()] == [("relay", dsn, True)]
        assert [r.action for r in a.audit_log() if r.action.startswith("provider.")] == \
            ["provider.save"]


def test_inline_secret_is_refused_and_nothing_stored(db):
    with mailers.Engine(db, actor=OPS) as eng:
        with pytest.raises(mailers.InvalidArgument, match="password"):
            eng.save_provider("relay", "smtp://apikey:hunter2@127.0.0.1:2525?tls=none")
        with pytest.raises(mailers.InvalidArgument):
            eng.save_provider("relay", "nosuchscheme://x")
        assert eng.stored_providers() == []


def test_remove_is_refused_while_a_mailbox_uses_it(db):
    with mailers.Engine(db, actor=OPS) as eng:
        eng.save_provider("cap", "capture://capture")
        eng.upsert_mailbox(mailers.Mailbox("rep1", "rep1@brand.com", "cap"))
        with pytest.raises(mailers.InvalidArgument):
            eng.remove_provider("cap")
        assert [p.id for p in eng.stored_providers()] == ["cap"]
        eng.retire_mailbox("rep1")
        eng.remove_provider("cap")
        assert eng.stored_providers() == []
        with pytest.raises(mailers.NotFound):
            eng.remove_provider("cap")


def test_check_a_stored_smtp_provider(db, smtp_server):
    with mailers.Engine(db, actor=OPS) as eng:
        eng.save_provider("relay", f"smtp://127.0.0.1:{smtp_server.port}?tls=none")
        r = eng.check_provider("relay")
        assert (r.provider, r.transport, r.ok, r.failure) == ("relay", "smtp", True, None)
        assert r.message
        assert smtp_server.messages() == []  # nothing was sent


def test_check_a_dsn(engine):
    r = engine.check_provider(dsn="capture://capture")
    assert (r.provider, r.transport, r.ok) == ("", "capture", True)
    assert "nothing to check" in r.message


def test_failed_check_raises_its_failure_class(engine):
    with pytest.raises(mailers.TransientFailure) as e:
        engine.check_provider(dsn=f"smtp://127.0.0.1:{closed_port()}?tls=none")
    assert e.value.failure == "transient"
    assert isinstance(e.value.result, mailers.ProviderCheck)
    assert (e.value.result.ok, e.value.result.failure) == (False, "transient")


def test_check_refuses_bad_input(engine):
    with pytest.raises(mailers.NotFound):
        engine.check_provider("nosuch")
    with pytest.raises(mailers.InvalidArgument):
        engine.check_provider("cap", dsn="capture://capture")
    with pytest.raises(mailers.InvalidArgument):
        engine.check_provider()
    with pytest.raises(mailers.InvalidArgument):
        engine.check_provider(dsn="nosuchscheme://x")


def test_async_engine_checks_without_blocking_the_loop(db):
    import asyncio

    async def main():
        async with mailers.AsyncEngine(db, actor=OPS) as eng:
            await eng.save_provider("cap", "capture://capture")
            assert [p.id for p in await eng.stored_providers()] == ["cap"]
            r = await eng.check_provider("cap")
            assert r.ok and r.transport == "capture"
            await eng.remove_provider("cap")
            assert await eng.stored_providers() == []

    asyncio.run(main())
