"""Stored providers (save, list, remove, shared by the engines of a
workspace) and provider checks, which send nothing."""

import socket
import subprocess
import threading

import pytest

import mailers
from conftest import OPS, SmtpServer


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


def test_the_hosts_provider_is_checked_before_a_stored_one(engine):
    # The engine fixture registered "cap" (capture); the store holds another "cap".
    engine.save_provider("cap", f"smtp://127.0.0.1:{closed_port()}?tls=none")
    r = engine.check_provider("cap")
    assert (r.transport, r.ok) == ("capture", True)


def test_a_stored_dsn_that_cannot_be_built_here_is_invalid_argument(db, monkeypatch):
    monkeypatch.setenv("MAILERS_PY_TEST_GONE", "s3cret")
    with mailers.Engine(db, actor=OPS) as a:
        a.save_provider("gone", "smtp://u:env:MAILERS_PY_TEST_GONE@127.0.0.1:1?tls=none")
    monkeypatch.delenv("MAILERS_PY_TEST_GONE")
    with mailers.Engine(db, actor=OPS) as b:
        with pytest.raises(mailers.InvalidArgument, match="MAILERS_PY_TEST_GONE"):
            b.check_provider("gone")


@pytest.fixture
def auth_smtp_server(tmp_path):
    """The test SMTP server with STARTTLS (a throwaway self-signed certificate)
    and AUTH as alice / right."""
    probe = subprocess.run(["/usr/bin/python3", "-c", "import aiosmtpd"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("aiosmtpd is not installed (scripts/install-deps installs it)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                           "-keyout", str(key), "-out", str(cert), "-days", "1",
                           "-subj", "/CN=127.0.0.1"], capture_output=True)
    if made.returncode != 0:
        pytest.skip("the openssl tool could not make a certificate")
    server = SmtpServer(tmp_path, "--cert", str(cert), "--key", str(key),
                        "--user", "alice", "--password", "right")
    yield server
    server.stop()


def test_smtp_auth_refusal_raises_auth_failure(db, auth_smtp_server, monkeypatch):
    dsn = (f"smtp://alice:env:MAILERS_PY_TEST_AUTH_PW@127.0.0.1:{auth_smtp_server.port}"
           "?verify=false")
    with mailers.Engine(db, actor=OPS) as eng:
        monkeypatch.setenv("MAILERS_PY_TEST_AUTH_PW", "right")
        eng.save_provider("relay", dsn)
        assert eng.check_provider("relay").ok
        monkeypatch.setenv("MAILERS_PY_TEST_AUTH_PW", "Wr0ngPassw0rd")
        eng.save_provider("relay", dsn)  # built again with the variable as it is now
        with pytest.raises(mailers.AuthFailure) as e:
            eng.check_provider("relay")
        assert e.value.failure == "auth"
        assert (e.value.result.ok, e.value.result.failure) == (False, "auth")
        assert "Wr0ngPassw0rd" not in str(e.value)
    assert auth_smtp_server.messages() == []


def test_close_cancels_a_check_waiting_on_a_silent_peer(db):
    # Accepts connections (the kernel completes them) and never answers.
    with socket.socket() as peer:
        peer.bind(("127.0.0.1", 0))
        peer.listen(8)
        port = peer.getsockname()[1]
        eng = mailers.Engine(db, actor=OPS)
        eng.save_provider("silent", f"smtp://127.0.0.1:{port}?tls=none")
        outcome = {}

        def check():
            try:
                eng.check_provider("silent")
            except mailers.Error as e:
                outcome["error"] = e

        t = threading.Thread(target=check)
        t.start()
        peer.settimeout(60)
        conn, _ = peer.accept()  # the check is connected, waiting for a greeting
        with conn:
            eng.close()
            t.join(120)
        assert not t.is_alive()
        assert isinstance(outcome.get("error"), mailers.Aborted)


def test_async_close_cancels_a_check(db):
    import asyncio

    async def main():
        with socket.socket() as peer:
            peer.bind(("127.0.0.1", 0))
            peer.listen(8)
            port = peer.getsockname()[1]
            eng = mailers.AsyncEngine(db, actor=OPS)
            await eng.save_provider("silent", f"smtp://127.0.0.1:{port}?tls=none")
            task = asyncio.ensure_future(eng.check_provider("silent"))
            peer.setblocking(False)
            conn, _ = await asyncio.wait_for(asyncio.get_running_loop().sock_accept(peer), 60)
            with conn:
                await eng.close()
                with pytest.raises(mailers.Aborted):
                    await asyncio.wait_for(task, 120)

    asyncio.run(main())
