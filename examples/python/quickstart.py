"""Quickstart: one mailbox, one pool, a suppression entry and two sends.

    PYTHONPATH=build/bindings/python python3 examples/python/quickstart.py

(or `pip install --no-build-isolation ./bindings/python` first). Messages are
written as .eml files by the file transport, so nothing leaves the machine;
swap the DSN for "smtp://user:env:SMTP_PASS@smtp.example.com:587" to send.
"""

import pathlib
import tempfile

import mailers

folder = pathlib.Path(tempfile.gettempdir()) / "mailers-quickstart-py"
folder.mkdir(exist_ok=True)
me = mailers.Principal("ops@brand.com", "Ops")  # every change is audited under this

with mailers.Engine(mailers.SQLite(str(folder / "workspace.db")), actor=me) as engine:
    engine.add_provider("files", f"file://{folder / 'out'}")
    engine.upsert_mailbox(mailers.Mailbox(
        "rep1", "Riley from Brand <rep1@brand.com>", "files",
        limits=[mailers.per_day(50), mailers.per_hour(10)], time_zone="Europe/Berlin"))
    engine.upsert_pool(mailers.Pool("outbound", ["rep1"]))

    # Someone asked not to be contacted: every send, through every mailbox
    # and provider, respects it from now on.
    engine.suppress("no-thanks@example.com", reason="unsubscribe")

    for to in ["ada@example.com", "no-thanks@example.com"]:
        try:
            r = engine.send(to, pool="outbound", subject="Quick question",
                            text="Hi! Would a short call next week work?",
                            idempotency_key=f"quickstart:{to}")
            print(f"{to}: sent by {r.mailbox}, id {r.provider_message_id}")
        except mailers.Duplicate:
            print(f"{to}: already sent earlier (idempotency key)")
        except mailers.Throttled as e:
            print(f"{to}: no capacity now, try again at {e.retry_at}")
        except mailers.Error as e:
            print(f"{to}: not sent: {e} ({e.code})")

print("messages are in", folder / "out")
