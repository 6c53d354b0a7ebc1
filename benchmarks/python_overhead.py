#!/usr/bin/env python3
"""CPU per send through the Python binding against the C++ engine, on the null
transport, in the same workspace shape and the same closed loop.

    PYTHONPATH=build/bindings/python /usr/bin/python3 benchmarks/python_overhead.py \\
        [--sends N] [--inflight K] [--cpp build/benchmarks/decision_path_bench]

The C++ figure is decision_path_bench's closed loop (50 mailboxes in a
weighted pool, 1 KiB text, an idempotency key per send, a fresh SQLite file,
K sends in flight, 20,000 sends of warm-up), run with --suppressed 0. The
binding runs the same loop twice: from asyncio (K coroutines, each awaiting
its next send) and from completion callbacks (`send_nowait`, each
completion starting the next send on the engine's thread). CPU is the whole
process's user + system time (every thread), divided by the sends.
"""

import argparse
import asyncio
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time

import mailers

TEXT = "x" * 1024


def request(i):
    return dict(to=f"prospect{i}@example{i % 997}.com", pool="bench", subject="Quick question",
                text=TEXT, idempotency_key=f"bench:{i}")


def setup(engine, mailboxes=50):
    engine.add_provider("null", "null://null")
    ids = []
    for i in range(mailboxes):
        engine.upsert_mailbox(mailers.Mailbox(
            f"mb{i}", f"Rep <rep{i}@brand{i % 5}.com>", "null",
            limits=[mailers.per_day(100000), mailers.per_hour(20000)], weight=1 + i % 3))
        ids.append(f"mb{i}")
    engine.upsert_pool(mailers.Pool("bench", ids, policy="weighted"))


def cpu():
    t = os.times()
    return t.user + t.system


async def closed_loop_async(engine, base, n, inflight):
    next_i = base
    end = base + n

    async def worker():
        nonlocal next_i
        while next_i < end:
            i = next_i
            next_i += 1
            r = request(i)
            await engine.send(r.pop("to"), **r)

    await asyncio.gather(*(worker() for _ in range(inflight)))


def closed_loop_callbacks(engine, base, n, inflight):
    lock = threading.Lock()
    state = {"next": base, "done": 0}
    finished = threading.Event()
    end = base + n

    def start_one():
        with lock:
            if state["next"] >= end:
                return
            i = state["next"]
            state["next"] += 1
        r = request(i)
        engine.send_nowait(r.pop("to"), completed, **r)

    def completed(err, result):
        if err is not None:
            print("send failed:", err, file=sys.stderr)
            os._exit(1)
        with lock:
            state["done"] += 1
            if state["done"] == n:
                finished.set()
        start_one()

    for _ in range(inflight):
        start_one()
    finished.wait()


def measure(fn, n):
    c0, t0 = cpu(), time.perf_counter()
    fn()
    dt, dc = time.perf_counter() - t0, cpu() - c0
    return n / dt, dc / n * 1e6


def run_cpp(path, sends, inflight, folder):
    out = subprocess.run([path, "--sends", str(sends), "--inflight", str(inflight),
                          "--suppressed", "0", "--rate-sends", "2000", "--rate", "2000",
                          "--db", str(folder / "cpp.db")],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"closed loop \(\d+ in flight, \d+ sends\): (\d+) sends/s, ([\d.]+) us CPU/send",
                  out)
    return (float(m.group(1)), float(m.group(2))) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sends", type=int, default=50000)
    ap.add_argument("--inflight", type=int, default=256)
    ap.add_argument("--cpp", default="build/benchmarks/decision_path_bench")
    o = ap.parse_args()
    folder = pathlib.Path(tempfile.mkdtemp(prefix="mailers-pybench-"))
    rows = []

    async def async_face():
        async with mailers.AsyncEngine(mailers.SQLite(str(folder / "async.db")),
                                       random_seed=1) as eng:
            setup(eng.sync)
            await closed_loop_async(eng, 0, 20000, o.inflight)  # warm-up
            c0, t0 = cpu(), time.perf_counter()
            await closed_loop_async(eng, 20000, o.sends, o.inflight)
            dt, dc = time.perf_counter() - t0, cpu() - c0
            return o.sends / dt, dc / o.sends * 1e6

    rows.append(("python, asyncio", *asyncio.run(async_face())))

    with mailers.Engine(mailers.SQLite(str(folder / "cb.db")), random_seed=1) as eng:
        setup(eng)
        closed_loop_callbacks(eng, 0, 20000, o.inflight)
        rows.append(("python, callbacks",
                     *measure(lambda: closed_loop_callbacks(eng, 20000, o.sends, o.inflight),
                              o.sends)))

    cpp = run_cpp(o.cpp, o.sends, o.inflight, folder) if pathlib.Path(o.cpp).exists() else None
    if cpp:
        rows.insert(0, ("C++ engine (decision_path_bench)", *cpp))
    load = os.getloadavg()[0]
    print(f"\nnull transport, SQLite, 50 mailboxes, {o.inflight} in flight, {o.sends} sends "
          f"(load average {load:.2f})\n")
    print("| path | sends/s | µs CPU/send | over C++ |")
    print("|---|---:|---:|---:|")
    for name, rate, us in rows:
        over = f"+{us - cpp[1]:.1f} µs" if cpp and not name.startswith("C++") else ""
        print(f"| {name} | {rate:,.0f} | {us:.1f} | {over} |")
    if not cpp:
        print(f"\n({o.cpp} not found: build the decision_path_bench target for the C++ row)")


if __name__ == "__main__":
    main()
