"""Sends through the capture transport, every error class, suppression, pause, events, queue."""

import logging
import threading
import time

import pytest

import mailers
from conftest import OPS, setup_engine


def send(engine, to="ada@example.com", **kw):
    kw.setdefault("pool", "out")
    kw.setdefault("subject", "Quick question")
    kw.setdefault("text", "Hi!")
    return engine.send(to, **kw)


def test_send_through_capture(engine):
    r = send(engine, cc=["Bea <bea@example.com>"], bcc=["hidden@example.com"],
             reply_to="replies@brand.com", headers={"X-Campaign": "spring"},
             attachments=[mailers.Attachment("a.txt", b"\x00\x01bytes", "text/plain")],
             unsubscribe_url="https://brand.com/u/1", idempotency_key="q1")
    assert r.state == "accepted" and r.mailbox == "rep1" and r.provider == "cap"
    assert r.provider_message_id == "capture-1" and r.attempts == 1 and not r.duplicate
    [c] = engine.captured("cap")
    assert c.rcpt_to == ["ada@example.com", "bea@example.com", "hidden@example.com"]
    assert c.mail_from == "rep1@brand.com" and c.send_id == r.send_id
    assert b"X-Campaign: spring" in c.data and b"hidden@" not in c.data
    assert b"List-Unsubscribe: <https://brand.com/u/1>" in c.data
    assert c.message_id == r.message_id
    engine.clear_captured("cap")
    assert engine.captured("cap") == []


def test_idempotency(engine):
    first = send(engine, idempotency_key="same")
    with pytest.raises(mailers.Duplicate) as e:
        send(engine, idempotency_key="same")
    assert e.value.result.send_id == first.send_id and e.value.result.duplicate
    assert len(engine.captured("cap")) == 1
    assert engine.stats().duplicates == 1


def test_send_nowait_callback(engine):
    done = threading.Event()
    got = []

    def cb(err, result):
        got.append((err, result, threading.current_thread()))
        done.set()

    engine.send_nowait("ada@example.com", cb, pool="out", subject="s", text="t")
    assert done.wait(10)
    err, result, thread = got[0]
    assert err is None and result.state == "accepted"
    assert thread is not threading.main_thread()


ERRORS = [
    (dict(to="not-an-address"), mailers.InvalidAddress, "invalid_address"),
    (dict(subject="a\r\nBcc: x@example.com"), mailers.HeaderInjection, "header_injection"),
    (dict(headers={"Bad Name": "x"}), mailers.InvalidHeader, "invalid_header"),
    (dict(pool="", mailbox=""), mailers.InvalidArgument, "invalid_argument"),
    (dict(attachments=[mailers.Attachment("big.bin", b"x" * (26 * 1024 * 1024))]),
     mailers.MessageTooLarge, "message_too_large"),
    (dict(pool="nope"), mailers.UnknownPool, "unknown_pool"),
    (dict(pool="", mailbox="nope"), mailers.UnknownMailbox, "unknown_mailbox"),
]


@pytest.mark.parametrize("kw, error, code", ERRORS, ids=[e[2] for e in ERRORS])
def test_input_errors(engine, kw, error, code):
    to = kw.pop("to", "ada@example.com")
    with pytest.raises(error) as e:
        send(engine, to, **kw)
    assert e.value.code == code and e.value.category == "mailers" and e.value.failure is None
    assert isinstance(e.value, mailers.Error)
    assert engine.captured("cap") == []


def test_unknown_provider(engine):
    engine.upsert_mailbox(mailers.Mailbox("ghost", "ghost@brand.com", "not-registered"))
    with pytest.raises(mailers.UnknownProvider):
        send(engine, pool="", mailbox="ghost")
    with pytest.raises(mailers.UnknownProvider):
        engine.captured("not-registered")


def test_not_found_and_permission_denied(engine):
    with pytest.raises(mailers.NotFound) as e:
        engine.cancel_queued(999)
    assert e.value.code == "not_found"
    with pytest.raises(mailers.UnknownPool):
        engine.remove_pool("nope")
    engine.put_role("admin", ["manage_access", "manage_pools", "send"])
    engine.put_role("sender", ["send"])
    engine.grant_access(OPS.id, "admin")
    engine.grant_access("intern", "sender", "pool", "out")
    engine.set_access_control(True)
    intern = mailers.Principal("intern")
    send(engine, actor=intern)
    with pytest.raises(mailers.PermissionDenied) as e:
        engine.pause("workspace", actor=intern)
    assert e.value.code == "permission_denied"
    with pytest.raises(mailers.PermissionDenied):
        engine.upsert_pool(mailers.Pool("p2", ["rep1"]), actor=intern)
    assert not engine.is_paused()


def test_throttled_carries_retry_at(db):
    with mailers.Engine(db, actor=OPS) as eng:
        setup_engine(eng, limits=[mailers.per_hour(1)])
        send(eng)
        with pytest.raises(mailers.Throttled) as e:
            send(eng, "bob@example.com")
        assert isinstance(e.value, mailers.NoCapacity)
        assert e.value.retry_at is not None and e.value.result.retry_at == e.value.retry_at
        assert eng.status("rep1").blocked == "cap_reached"


def test_suppression(engine):
    engine.suppress("No-Thanks@Example.com", reason="unsubscribe", source="crm")
    engine.suppress("blocked.example", kind="domain", reason="legal")
    assert engine.is_suppressed("no-thanks@example.com")
    assert engine.is_suppressed("anyone@sub.blocked.example")
    assert not engine.is_suppressed("anyone@notblocked.example")
    entry = engine.find_suppression("no-thanks@example.com")
    assert entry.reason == "unsubscribe" and entry.source == "crm" and entry.kind == "address"
    with pytest.raises(mailers.Suppressed) as e:
        send(engine, "no-thanks@example.com")
    assert e.value.code == "suppressed"
    with pytest.raises(mailers.Suppressed):
        send(engine, "ada@example.com", cc=["x@blocked.example"])
    assert engine.captured("cap") == []
    with pytest.raises(mailers.InvalidAddress):
        engine.is_suppressed("nope")

    csv = engine.export_suppressions()
    assert csv.splitlines()[0].startswith("value,kind,reason")
    assert engine.suppression_count() == 2
    assert engine.unsuppress("no-thanks@example.com")
    assert not engine.unsuppress("no-thanks@example.com")
    send(engine, "no-thanks@example.com")

    n = engine.import_suppressions("a@example.com,address,manual\nb@example.com,address,legal\n")
    assert n == 2 and engine.suppression_count() == 3
    with pytest.raises(mailers.InvalidCsv) as e:
        engine.import_suppressions("c@example.com,address,manual\nbroken,line,nope\n")
    assert "2" in str(e.value)
    assert not engine.is_suppressed("c@example.com") and engine.suppression_count() == 3


def test_pause_and_resume(engine):
    engine.pause("pool", "out", reason="incident")
    assert engine.is_paused("pool", "out")
    [p] = engine.pauses()
    assert (p.scope, p.id, p.reason, p.actor) == ("pool", "out", "incident", OPS.id)
    with pytest.raises(mailers.Paused):
        send(engine)
    engine.resume("pool", "out")
    send(engine)
    engine.pause()
    with pytest.raises(mailers.Paused):
        send(engine)
    engine.resume()
    assert engine.pauses() == []


def test_events_in_order(engine):
    with engine.events() as stream:
        r = send(engine)
        with pytest.raises(mailers.Suppressed):
            engine.suppress("no@example.com")
            send(engine, "no@example.com")
        got = [stream.get(5), stream.get(5)]
    assert [e.type for e in got] == ["sent", "suppressed"]
    assert got[0].send_id == r.send_id and got[0].recipient == "ada@example.com"


def test_raising_callback_is_reported_and_others_still_run(engine, caplog):
    seen = []
    engine.on_event(lambda ev: 1 / 0)
    sub = engine.on_event(seen.append)
    with caplog.at_level(logging.ERROR, logger="mailers"):
        send(engine)
        send(engine, "bob@example.com")
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(seen) == 2
    assert any("ZeroDivisionError" in r.exc_text for r in caplog.records if r.exc_text)
    sub.cancel()
    send(engine, "carol@example.com")
    engine.flush()
    time.sleep(0.1)
    assert len(seen) == 2

    def bad_completion(err, result):
        raise RuntimeError("boom in a completion")

    with caplog.at_level(logging.ERROR, logger="mailers"):
        done = threading.Event()
        engine.on_event(lambda ev: done.set())
        engine.send_nowait("dan@example.com", bad_completion, pool="out", subject="s", text="t")
        assert done.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                "boom in a completion" in (r.exc_text or "") for r in caplog.records):
            time.sleep(0.01)
    assert any("boom in a completion" in (r.exc_text or "") for r in caplog.records)
    send(engine, "erin@example.com")  # the engine goes on


def test_blocking_send_from_a_callback_is_refused(engine):
    errors = []
    done = threading.Event()

    def cb(ev):
        try:
            engine.send("loop@example.com", pool="out", subject="s", text="t")
        except RuntimeError as e:
            errors.append(e)
        done.set()

    engine.on_event(cb)
    send(engine)
    assert done.wait(10)
    assert errors and "callback" in str(errors[0])


def test_queue(engine):
    qid = engine.enqueue("ada@example.com", pool="out", subject="later", text="t",
                         idempotency_key="queued-1")
    assert engine.enqueue("ada@example.com", pool="out", subject="later", text="t",
                          idempotency_key="queued-1") == qid
    deadline = time.monotonic() + 20
    while engine.find_queued(qid).state != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    item = engine.find_queued(qid)
    assert item.state == "done" and item.send_id > 0
    assert len(engine.captured("cap")) == 1
    with pytest.raises(mailers.Suppressed):
        engine.suppress("gone@example.com")
        engine.enqueue("gone@example.com", pool="out", subject="s", text="t")
    assert engine.queue_counts().done == 1


def test_audit_log_and_verify(engine):
    log = engine.audit_log()
    assert [r.seq for r in log] == list(range(1, len(log) + 1))
    assert {"provider.add", "mailbox.upsert", "pool.upsert"} <= {r.action for r in log}
    assert log[1].prev_hash == log[0].hash
    assert log[-1].actor == OPS.id and log[-1].action == "pool.upsert"
    engine.verify_audit()
    head = engine.audit_checkpoint()
    engine.verify_audit(head)
    with pytest.raises(mailers.AuditChainBroken) as e:
        engine.verify_audit(mailers.AuditHead(head.seq + 5, head.hash))
    assert e.value.bad_seq == head.seq + 1
    with pytest.raises(mailers.AuditChainBroken):
        engine.verify_audit(mailers.AuditHead(head.seq, "0" * 64))


def test_webhook_hard_bounce_suppresses(engine):
    body = ('{"RecordType":"Bounce","ID":4323372036854775807,"Type":"HardBounce",'
            '"TypeCode":1,"MessageID":"883953f4-6105-42a2-a16a-77a8eac79483",'
            '"Email":"bounced@example.com","From":"rep1@brand.com",'
            '"BouncedAt":"2026-11-30T10:00:00Z","Description":"gone","Details":"550 5.1.1"}')
    with engine.events() as stream:
        r = engine.ingest_webhook("postmark", body, headers={"Content-Type": "application/json"},
                                  postmark_user="hook", postmark_password="pw", verify=False)
        assert r.http_status == 200, r.reason
        assert r.suppressed == 1 and r.events[0].type == "bounced"
        assert r.events[0].provider_event_id == "4323372036854775807"
        assert r.events[0].campaign == "" and r.events[0].step is None
        assert stream.get(5).type == "bounced"
    assert engine.is_suppressed("bounced@example.com")
    again = engine.ingest_webhook("postmark", body, verify=False)
    assert again.duplicates == 1 and again.suppressed == 0
    refused = engine.ingest_webhook("postmark", body, postmark_user="hook",
                                    postmark_password="pw")
    assert refused.http_status == 401
    with pytest.raises(mailers.InvalidArgument):
        engine.ingest_webhook("pigeon", body)


def test_operations_after_close_raise_aborted(db):
    eng = setup_engine(mailers.Engine(db, actor=OPS))
    eng.close()
    eng.close()  # idempotent
    assert eng.closed
    with pytest.raises(mailers.Aborted):
        send(eng)
    with pytest.raises(mailers.Aborted):
        eng.mailboxes()


def test_one_click_unsubscribe(db, monkeypatch):
    monkeypatch.setenv("MAILERS_PY_UNSUB_KEY", "k" * 32)
    with mailers.Engine(db, actor=OPS, unsubscribe_url="https://brand.com/unsub",
                        unsubscribe_secret="env:MAILERS_PY_UNSUB_KEY") as eng:
        setup_engine(eng)
        send(eng)
        data = eng.captured("cap")[0].data.decode()
        import re
        token = re.search(r"List-Unsubscribe: <https://brand.com/unsub\?t=([^>]+)>",
                          data.replace("\r\n ", "")).group(1)
        r = eng.unsubscribe(token)
        assert (r.status, r.recipient, r.suppressed) == ("valid", "ada@example.com", True)
        assert eng.is_suppressed("ada@example.com")
        assert eng.unsubscribe(token).already
        assert eng.unsubscribe("garbage").status == "malformed"
    with pytest.raises(mailers.InvalidArgument):
        mailers.Engine(db, unsubscribe_url="http://brand.com/u", unsubscribe_secret="k" * 32)


def bounce_message(original_id, *recipients):
    """An RFC 3464 report; each recipient is (address, status, diagnostic)."""
    per_recipient = "".join(
        f"Final-Recipient: rfc822; {a}\r\nAction: failed\r\nStatus: {st}\r\n"
        f"Diagnostic-Code: smtp; {diag}\r\n\r\n" for a, st, diag in recipients)
    parts = [
        "Content-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n",
        "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mta.example.net\r\n"
        "\r\n" + per_recipient,
        f"Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{original_id}>\r\n\r\n",
    ]
    head = ("From: Mail Delivery System <postmaster@mta.example.net>\r\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=XX\r\n\r\n")
    return head + "".join(f"--XX\r\n{p}" for p in parts) + "--XX--\r\n"


BOUNCE = bounce_message("orig-1@brand.com",
                        ("gone@prospect.example", "5.1.1", "550 5.1.1 no such user"),
                        ("full@prospect.example", "4.2.2", "452 4.2.2 over quota"))


def test_delivery_report_and_verify_suppressions(engine):
    r = engine.ingest_delivery_report(BOUNCE.encode())
    assert r.recognised and r.format == "rfc3464" and r.original_message_id == "orig-1@brand.com"
    assert [e.bounce for e in r.events] == ["hard", "soft"] and r.suppressed == 1
    assert engine.is_suppressed("gone@prospect.example")
    assert not engine.is_suppressed("full@prospect.example")
    assert engine.ingest_delivery_report(BOUNCE).duplicates == 2
    assert not engine.ingest_delivery_report("Subject: Out of office\r\n\r\nAway.\r\n").recognised
    engine.import_suppressions("a@example.com,address,manual\n")
    report = engine.verify_suppressions()
    assert report.ok and report.audit_chain_ok and report.rows == 2 and report.problems == []


def test_settle_on_the_system_clock(engine, monkeypatch):
    qid = engine.enqueue("ada@example.com", pool="out", subject="s", text="t")
    assert engine.settle() is None
    assert engine.find_queued(qid).state == "done" and len(engine.captured("cap")) == 1
    past = engine.find_queued(qid).not_before
    errors = []
    done = threading.Event()

    def from_callback(ev):
        try:
            engine.settle()
        except RuntimeError as e:
            errors.append(e)
        done.set()

    sub = engine.on_event(from_callback)
    send(engine)
    assert done.wait(10) and errors and "callback" in str(errors[0])
    sub.cancel()
    monkeypatch.setattr(engine, "next_due", lambda: past)  # always something due
    with pytest.raises(TimeoutError):
        engine.settle(timeout=0.05)
