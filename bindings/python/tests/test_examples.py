"""The examples in examples/python run as documented."""

import os
import subprocess
import sys

from conftest import SOURCE


def run(script, *args):
    return subprocess.run([sys.executable, str(SOURCE / "examples/python" / script), *args],
                          env=dict(os.environ), capture_output=True, text=True, timeout=300)


def test_quickstart():
    p = run("quickstart.py")
    assert p.returncode == 0, p.stderr
    assert "no-thanks@example.com: not sent" in p.stdout


def test_sales_day(tmp_path):
    p = run("sales_day.py", str(tmp_path / "demo"))
    assert p.returncode == 0, p.stderr
    assert "Caps held" in p.stdout and "Audit chain: verifies" in p.stdout
    assert len(list((tmp_path / "demo" / "eml").iterdir())) > 100


def test_sequence():
    p = run("sequence.py")
    assert p.returncode == 0, p.stderr
    sent = [line for line in p.stdout.splitlines() if " sent " in line]
    assert len(sent) == 6, p.stdout
    assert sum("step 1 rep1" in line for line in sent) == 3
    assert sum("step 2 rep2" in line for line in sent) == 3
    assert "enrollments: completed, completed, completed" in p.stdout


def test_campaign():
    p = run("campaign.py")
    assert p.returncode == 0, p.stderr
    assert "forecast: 29 sends" in p.stdout
    assert "done: sent 29, finished True" in p.stdout

