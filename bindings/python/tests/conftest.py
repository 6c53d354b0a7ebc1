"""Fixtures: engines on a fresh SQLite file, and the repository's test SMTP server."""

import os
import pathlib
import select
import subprocess
import sys

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
