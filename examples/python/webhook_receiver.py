"""Receiving provider webhooks with the standard library's HTTP server:
each POST to /hooks/<provider> goes to Engine.ingest_webhook, which verifies
it, suppresses hard bounces, complaints and unsubscribes (exactly once, even
when the provider delivers again), and passes the events to the handlers.

    POSTMARK_HOOK_USER=hook POSTMARK_HOOK_PASSWORD=secret MAILGUN_WEBHOOK_KEY=... \\
    PYTHONPATH=build/bindings/python python3 examples/python/webhook_receiver.py [port]

Put it behind a TLS-terminating proxy and point the providers' webhook URLs
at https://<host>/hooks/<provider>.
"""

import http.server
import os
import sys

import mailers

engine = mailers.Engine(mailers.SQLite("workspace.db"),
                        actor=mailers.Principal("webhooks", "Webhook receiver"))
engine.on_event(lambda e: print(f"{e.type}: {e.recipient} {e.detail}", flush=True))

PARAMS = {
    "postmark": {"postmark_user": os.environ.get("POSTMARK_HOOK_USER", ""),
                 "postmark_password": os.environ.get("POSTMARK_HOOK_PASSWORD", "")},
    "mailgun": {"mailgun_signing_key": os.environ.get("MAILGUN_WEBHOOK_KEY", "")},
    "sendgrid": {"sendgrid_public_key": os.environ.get("SENDGRID_WEBHOOK_KEY", "")},
}


class Hooks(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        provider = self.path.rstrip("/").rsplit("/", 1)[-1]
        if not self.path.startswith("/hooks/") or provider not in PARAMS:
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            result = engine.ingest_webhook(provider, body, headers=dict(self.headers.items()),
                                           **PARAMS[provider])
        except mailers.StoreError:
            self.send_error(503)  # nothing was applied: the provider delivers again
            return
        self.send_response(result.http_status)
        self.end_headers()
        if result.http_status != 200:
            print(f"refused {provider} request: {result.reason}", file=sys.stderr)


port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
with engine, http.server.ThreadingHTTPServer(("0.0.0.0", port), Hooks) as server:
    print(f"listening on :{port}/hooks/<postmark|mailgun|sendgrid>")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
