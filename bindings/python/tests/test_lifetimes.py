"""Closing, garbage collection with sends in flight, and interpreter shutdown."""

import gc
import os
import subprocess
import sys
import textwrap
import threading
import weakref

import pytest

import mailers
from conftest import OPS, setup_engine


def test_close_with_sends_in_flight(db, smtp_server):
    eng = mailers.Engine(db, actor=OPS)
    setup_engine(eng, "smtp", f"smtp://127.0.0.1:{smtp_server.port}?tls=none")
    outcomes = []
    done = threading.Event()

    def cb(err, result):
        outcomes.append(err or result)
        if len(outcomes) == 5:
            done.set()

    for i in range(4):
        eng.send_nowait(f"lead{i}@example.com", cb, pool="out", subject="s", text="t")
    eng.send_nowait("slowdata@example.com", cb, pool="out", subject="s", text="t")
    eng.close()
    # close() returns once every send has its outcome: none is left hanging.
    assert done.is_set() and len(outcomes) == 5
    for o in outcomes:
        assert isinstance(o, (mailers.SendResult, mailers.Aborted)), o


def test_garbage_collected_engine_settles_its_sends(db):
    outcomes = []

    def start():
        eng = setup_engine(mailers.Engine(db, actor=OPS))
        for i in range(200):
            eng.send_nowait(f"lead{i}@example.com", lambda e, r: outcomes.append(e or r),
                            pool="out", subject="s", text="t")
        return weakref.ref(eng)

    ref = start()
    gc.collect()
    assert ref() is None
    assert len(outcomes) == 200
    assert all(isinstance(o, (mailers.SendResult, mailers.Aborted)) for o in outcomes)
    # The store is released: the file opens again and what was sent is there.
    with mailers.Engine(db, actor=OPS) as eng:
        assert eng.find_mailbox("rep1") is not None


def test_callbacks_do_not_keep_the_engine_alive(db):
    eng = setup_engine(mailers.Engine(db, actor=OPS))
    eng.on_event(lambda ev: None)
    stream = eng.events()
    ref = weakref.ref(eng)
    del eng
    gc.collect()
    assert ref() is None
    assert list(stream) == []  # ended by the close


def test_close_from_an_event_callback(db):
    eng = setup_engine(mailers.Engine(db, actor=OPS))
    closing = threading.Event()
    eng.on_event(lambda ev: (eng.close(), closing.set()))
    eng.send("ada@example.com", pool="out", subject="s", text="t")
    assert closing.wait(10)
    for _ in range(500):
        if eng.closed:
            break
        threading.Event().wait(0.01)
    assert eng.closed


@pytest.mark.parametrize("face", ["blocking", "asyncio"])
def test_interpreter_exit_with_sends_in_flight(tmp_path, face):
    db = tmp_path / "w.db"
    script = textwrap.dedent(f"""
        import asyncio, sys
        import mailers
        eng = mailers.Engine(mailers.SQLite({str(db)!r}))
        eng.add_provider("cap", "capture://capture")
        eng.upsert_mailbox(mailers.Mailbox("rep1", "rep1@brand.com", "cap"))
        eng.upsert_pool(mailers.Pool("out", ["rep1"]))
        if {face!r} == "blocking":
            for i in range(300):
                eng.send_nowait(f"l{{i}}@example.com", lambda e, r: print("late", flush=True),
                                pool="out", subject="s", text="t", idempotency_key=f"k{{i}}")
        else:
            async def main():
                a = mailers.AsyncEngine.__new__(mailers.AsyncEngine)
                a.sync = eng
                futs = [a.send(f"l{{i}}@example.com", pool="out", subject="s", text="t",
                               idempotency_key=f"k{{i}}") for i in range(300)]
                await futs[0]
            asyncio.run(main())
        sys.exit(0)  # no close(): the atexit hook does it
    """)
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Fatal" not in proc.stderr
    with mailers.Engine(mailers.SQLite(str(db)), actor=OPS) as eng:
        eng.add_provider("cap", "capture://capture")
        # Each send either went (its key is taken) or never started.
        went = 0
        for i in range(300):
            try:
                eng.send(f"l{i}@example.com", pool="out", subject="s", text="t",
                         idempotency_key=f"k{i}")
            except mailers.Duplicate as e:
                assert e.result.state in ("accepted", "failed")
                went += 1
        assert went >= 1
        eng.verify_audit()


@pytest.mark.parametrize("round_", range(3))
def test_close_races_calls_from_other_threads(db, round_):
    eng = setup_engine(mailers.Engine(db, actor=OPS))
    errors = []
    counts = {"ok": 0, "aborted": 0}
    lock = threading.Lock()
    started = threading.Barrier(9)

    def worker(n):
        started.wait()
        for i in range(200):
            try:
                if i % 3 == 0:
                    eng.send(f"w{n}-{i}@example.com", pool="out", subject="s", text="t")
                elif i % 3 == 1:
                    eng.is_suppressed(f"w{n}-{i}@example.com")
                else:
                    eng.suppress(f"x{n}-{i}@example.com")
                with lock:
                    counts["ok"] += 1
            except mailers.Aborted:
                with lock:
                    counts["aborted"] += 1
            except Exception as e:  # anything else is a failure of the invariant
                errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    started.wait()
    threading.Event().wait(0.02 * (round_ + 1))
    eng.close()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert counts["ok"] + counts["aborted"] == 8 * 200


def test_async_engine_collected_with_futures_in_flight(db):
    import asyncio

    async def main():
        eng = mailers.AsyncEngine(db, actor=OPS)
        setup_engine(eng.sync)
        futs = [eng.send(f"l{i}@example.com", pool="out", subject="s", text="t")
                for i in range(300)]
        ref = weakref.ref(eng.sync)
        del eng
        gc.collect()
        assert ref() is None
        outcomes = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), 60)
        assert all(isinstance(o, (mailers.SendResult, mailers.Aborted)) for o in outcomes)
        return outcomes

    outcomes = asyncio.run(main())
    assert len(outcomes) == 300
