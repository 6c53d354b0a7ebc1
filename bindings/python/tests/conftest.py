"""Fixtures: engines on a fresh SQLite file, and the repository's test SMTP server."""

import datetime as dt
import os
import pathlib
import select
import subprocess
import sys
import time

import pytest

import mailers

SOURCE = pathlib.Path(os.environ.get("MAILERS_SOURCE_DIR",
                                     pathlib.Path(__file__).resolve().parents[3]))
OPS = mailers.Principal("ops@brand.com", "Ops")


def setup_engine(engine, provider="cap", dsn="capture://capture", limits=()):
    engine.add_provider(provider, dsn)
    engine.upsert_mailbox(mailers.Mailbox("rep1", "Riley <rep1@brand.com>", provider,
                                          limits=list(limits)))
    engine.upsert_pool(mailers.Pool("out", ["rep1"]))
    return engine


@pytest.fixture
def db(tmp_path):
    return mailers.SQLite(str(tmp_path / "workspace.db"))


@pytest.fixture
def engine(db):
    with mailers.Engine(db, actor=OPS) as eng:
        yield setup_engine(eng)


class SmtpServer:
    def __init__(self, tmp, *args):
        self.out = tmp / "smtp-out"
        self.out.mkdir()
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(SOURCE / "tests/integration/smtp_server.py"),
             "--out", str(self.out), "--log", str(tmp / "smtp.log"), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            pytest.fail("the test SMTP server did not start")
        self.port = int(line.split()[1])

    def stop(self):
        if self.proc.stdin:
            self.proc.stdin.close()  # the server exits when its stdin closes
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def messages(self):
        return sorted(self.out.glob("msg-*.eml"))


@pytest.fixture
def smtp_server(tmp_path):
    probe = subprocess.run(["/usr/bin/python3", "-c", "import aiosmtpd"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("aiosmtpd is not installed (scripts/install-deps installs it)")
    server = SmtpServer(tmp_path, "--no-starttls")
    yield server
    server.stop()


# Monday 30 November 2026, 08:00 UTC.
MONDAY = dt.datetime(2026, 11, 30, 8, tzinfo=dt.timezone.utc)


def drive(engine, clock, until):
    """Moves the clock from one due time to the next, up to ``until``."""
    while True:
        due = engine.settle()
        if due is None or due > until:
            return
        clock.set(due)


def sim_engine(db, **kw):
    """An engine on a manual clock at MONDAY whose queue looks every 5 ms, with
    mailboxes rep1, rep2 (pool "sdr") and founder on the capture provider."""
    clock = mailers.ManualClock(MONDAY)
    eng = mailers.Engine(db, actor=OPS, clock=clock, queue_poll_interval=0.005,
                         random_seed=7, **kw)
    eng.add_provider("cap", "capture://capture")
    for id in ("rep1", "rep2", "founder"):
        eng.upsert_mailbox(mailers.Mailbox(id, f"{id.title()} <{id}@brand.com>", "cap"))
    eng.upsert_pool(mailers.Pool("sdr", ["rep1", "rep2"]))
    return eng, clock


def wait_until(fn, timeout=20):
    """Polls ``fn`` until it returns something true, and returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.01)
    pytest.fail("condition not reached")
