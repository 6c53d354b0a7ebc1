"""Outbound webhook endpoints: configuration, refusals, and signed deliveries to a
receiver on 127.0.0.1 (loopback and plain http allowed, as tests allow them)."""

import http.server
import json
import threading
import time

import pytest

import mailers
from conftest import OPS, setup_engine, wait_until

LOOPBACK = mailers.OutboundWebhooks(allow_http=True, allow_private_targets=True,
                                    poll_interval=0.01, timeout=10)


class Receiver:
    """An HTTP server answering each POST with ``status`` and keeping what it got."""

    def __init__(self, status=200):
        self.status = status
        self.hits = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.hits.append((dict(self.headers), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while len(self.hits) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.hits) >= n, self.hits
        return self.hits

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def test_endpoint_configuration(engine):
    before = len(engine.audit_log())
    refused = [
        (mailers.WebhookEndpoint("a", "http://example.com/hook"), "https://"),
        (mailers.WebhookEndpoint("a", "https://127.0.0.1/hook"), "loopback"),
        (mailers.WebhookEndpoint("bad id!", "https://example.com/"), "id"),
        (mailers.WebhookEndpoint("a", "https://example.com/", secret="plain"), "whsec_"),
        (mailers.WebhookEndpoint("a", "https://example.com/", event_types=["teleported"]),
         "teleported"),
    ]
    for ep, says in refused:
        with pytest.raises(mailers.InvalidArgument) as e:
            engine.put_webhook_endpoint(ep)
        assert says in str(e.value)
    assert engine.webhook_endpoints() == [] and len(engine.audit_log()) == before

    stored = engine.put_webhook_endpoint(mailers.WebhookEndpoint(
        "crm", "https://crm.example.com/hooks/mail", event_types=["bounced", "complained"],
        description="the CRM"))
    assert stored.secret.startswith("whsec_") and len(stored.secret) > 30
    [listed] = engine.webhook_endpoints()
    assert listed.secret == "whsec_…" and listed.event_types == ["bounced", "complained"]
    assert engine.find_webhook_endpoint("crm") == listed
    assert engine.find_webhook_endpoint("nope") is None
    assert stored.secret not in "".join(r.after for r in engine.audit_log())

    engine.disable_webhook_endpoint("crm", reason="maintenance")
    ep = engine.find_webhook_endpoint("crm")
    assert not ep.enabled and ep.disabled_reason == "maintenance"
    engine.enable_webhook_endpoint("crm")
    assert engine.find_webhook_endpoint("crm").enabled
    with pytest.raises(mailers.NotFound):
        engine.disable_webhook_endpoint("nope")
    with pytest.raises(mailers.NotFound):
        engine.enable_webhook_endpoint("nope")
    # Replaced without a secret: the stored one is kept.
    engine.put_webhook_endpoint(mailers.WebhookEndpoint("crm", "https://crm.example.com/v2"))
    assert engine.find_webhook_endpoint("crm").url == "https://crm.example.com/v2"
    assert engine.remove_webhook_endpoint("crm") and not engine.remove_webhook_endpoint("crm")
    actions = [r.action for r in engine.audit_log()]
    for a in ("webhook.put", "webhook.disable", "webhook.enable", "webhook.remove"):
        assert a in actions, a

    engine.put_role("sender", ["send"])
    engine.put_role("admin", ["manage_access"])
    engine.grant_access(OPS.id, "admin")
    engine.grant_access("intern", "sender")
    engine.set_access_control(True)
    with pytest.raises(mailers.PermissionDenied):
        engine.put_webhook_endpoint(mailers.WebhookEndpoint("x", "https://example.com/"),
                                    actor=mailers.Principal("intern"))


def test_signed_delivery_to_a_local_receiver(db, receiver):
    with mailers.Engine(db, actor=OPS, webhooks=LOOPBACK) as eng:
        setup_engine(eng)
        secret = eng.put_webhook_endpoint(mailers.WebhookEndpoint(
            "crm", receiver.url, event_types=["sent"])).secret
        r = eng.send("ada@example.com", pool="out", subject="s", text="t")
        [(hdrs, body)] = receiver.wait(1)
        check = mailers.verify_webhook_signature(secret, hdrs, body)
        assert check.ok and check and check.http_status == 200
        forged = mailers.verify_webhook_signature(secret, hdrs, body + b" ")
        assert not forged and forged.http_status == 403
        payload = json.loads(body)
        assert payload["type"] == "email.sent"
        assert payload["data"]["send_id"] == r.send_id
        assert payload["data"]["recipient"] == "ada@example.com"

        [d] = wait_until(lambda: eng.webhook_deliveries(endpoint="crm", state="delivered"))
        assert (d.event_type, d.attempts, d.last_status) == ("sent", 1, 200)
        assert d.message_id == hdrs["webhook-id"] and json.loads(d.payload) == payload
        counts = eng.count_webhook_deliveries("crm")
        assert (counts.delivered, counts.pending, counts.failed) == (1, 0, 0)
        assert counts.last_delivered is not None
        metrics = eng.metrics_text()
        assert 'mailers_webhook_endpoint_enabled{endpoint="crm"} 1' in metrics
        assert 'mailers_webhook_deliveries{endpoint="crm",state="delivered"} 1' in metrics
        assert 'mailers_sends_total{outcome="accepted"} 1' in metrics


def test_a_failing_endpoint_is_disabled_then_retried(db):
    failing = Receiver(status=503)
    try:
        params = mailers.OutboundWebhooks(allow_http=True, allow_private_targets=True,
                                          poll_interval=0.01, max_attempts=1)
        with mailers.Engine(db, actor=OPS, webhooks=params) as eng:
            setup_engine(eng)
            with eng.events() as events:
                eng.put_webhook_endpoint(mailers.WebhookEndpoint("crm", failing.url,
                                                                 event_types=["sent"]))
                eng.send("ada@example.com", pool="out", subject="s", text="t")
                failing.wait(1)
                wait_until(lambda: not eng.find_webhook_endpoint("crm").enabled)
                [d] = eng.webhook_deliveries(state="failed")
                assert d.last_status == 503
                alert = events.get(10)
                while alert.type != "alert":
                    alert = events.get(10)
                assert "crm" in alert.detail
            failing.status = 200
            eng.enable_webhook_endpoint("crm", retry_failed=True)
            wait_until(lambda: eng.count_webhook_deliveries("crm").delivered == 1)
            assert len(failing.hits) == 2
            assert failing.hits[0][0]["webhook-id"] == failing.hits[1][0]["webhook-id"]
    finally:
        failing.stop()
