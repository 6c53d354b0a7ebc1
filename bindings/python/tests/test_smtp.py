"""Sends through the SMTP transport against the repository's test server
(tests/integration/smtp_server.py), and each failure class it can provoke."""

import email

import pytest

import mailers
from conftest import OPS, setup_engine


@pytest.fixture
def smtp_engine(db, smtp_server):
    with mailers.Engine(db, actor=OPS) as eng:
        setup_engine(eng, "smtp", f"smtp://127.0.0.1:{smtp_server.port}?tls=none")
        yield eng


def test_send_over_smtp(smtp_engine, smtp_server):
    r = smtp_engine.send("Ada <ada@example.com>", pool="out", subject="Grüße", text="Hallo\n",
                         cc=["bea@example.com"])
    assert r.state == "accepted" and r.provider == "smtp"
    [path] = smtp_server.messages()
    msg = email.message_from_bytes(path.read_bytes())
    assert msg["Message-ID"].strip("<>") == r.message_id
    assert "Riley" in msg["From"] and msg["Cc"] == "bea@example.com"


FAILURES = [
    ("reject550", mailers.RecipientRejected, "recipient_permanent", 550, "5.1.1"),
    ("unauth", mailers.AuthFailure, "auth", 550, "5.7.26"),
    ("blocked", mailers.ReputationFailure, "reputation", 554, "5.7.1"),
    ("quota", mailers.QuotaExhausted, "quota_exhausted", 550, "5.4.5"),
    ("throttle", mailers.ProviderThrottled, "throttled", 421, "4.7.0"),
    ("toobig", mailers.MessageRejected, "message_rejected", 552, "5.3.4"),
]


@pytest.mark.parametrize("local, error, failure, status, enhanced", FAILURES,
                         ids=[f[0] for f in FAILURES])
def test_smtp_failures_carry_diagnostics(smtp_engine, local, error, failure, status, enhanced):
    with pytest.raises(error) as e:
        smtp_engine.send(f"{local}@example.com", pool="out", subject="s", text="t")
    err = e.value
    assert isinstance(err, mailers.TransportError)
    assert err.category == "transport" and err.failure == failure
    assert err.diagnostics.status == status and err.diagnostics.enhanced_status == enhanced
    assert err.diagnostics.provider_reply
    if failure == "recipient_permanent":
        assert smtp_engine.is_suppressed(f"{local}@example.com")  # a hard bounce
    if failure == "throttled":
        assert isinstance(err, mailers.Throttled)


def test_lost_after_data_is_unknown_outcome(smtp_engine):
    with pytest.raises(mailers.UnknownOutcome) as e:
        smtp_engine.send("dropdata@example.com", pool="out", subject="s", text="t")
    assert e.value.result.state == "unknown"


def test_connection_refused_is_transient(db):
    with mailers.Engine(db, actor=OPS) as eng:
        setup_engine(eng, "smtp", "smtp://127.0.0.1:1?tls=none")
        with pytest.raises(mailers.TransientFailure) as e:
            eng.send("ada@example.com", pool="out", subject="s", text="t")
        assert e.value.failure == "transient" and e.value.result.state == "failed"
