"""Memory over many sends on the null transport.

Two measures. Python's own heap (tracemalloc) over 10k sends after a
warm-up must stay flat: a reference the binding failed to drop (a result,
an error, a callback) would show here. The process's RSS over 100k sends is
printed; it includes SQLite's page cache filling as the file grows (up to
32 MiB per connection, about 220 bytes a send until then, the same in a C++
program without Python: benchmarks/RESULTS.md), so it is bounded loosely."""

import asyncio
import gc
import os
import tracemalloc

import mailers
from conftest import OPS, setup_engine

SENDS = int(os.environ.get("MAILERS_PY_LEAK_SENDS", "100000"))


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def blast(eng, n, start, batch=1000):
    for base in range(start, start + n, batch):
        await asyncio.gather(*(eng.send(f"l{i}@example.com", pool="out", subject="s", text="t")
                               for i in range(base, base + batch)), return_exceptions=False)


async def blast_errors(eng, n):
    # Refusals go through the error path: exception objects, results, diagnostics.
    for _ in range(n // 1000):
        await asyncio.gather(*(eng.send("nope@example.com", pool="nope", subject="s", text="t")
                               for _ in range(1000)), return_exceptions=True)


def test_python_heap_is_flat(tmp_path):
    # The first round leaves one-time residue (interned names, free lists,
    # the last batch's objects); the rounds after it must add nothing.
    async def main():
        async with mailers.AsyncEngine(mailers.SQLite(str(tmp_path / "heap.db")),
                                       actor=OPS) as eng:
            setup_engine(eng.sync, "null", "null://null")
            async with eng.events() as stream:
                tracemalloc.start()
                traced = []
                for k in range(3):
                    await blast(eng, 5000, k * 5000)
                    await blast_errors(eng, 2000)
                    while not stream._q.empty():
                        stream._q.get_nowait()
                    gc.collect()
                    traced.append(tracemalloc.get_traced_memory()[0])
                tracemalloc.stop()
                return traced

    traced = asyncio.run(main())
    print(f"Python heap after each round of 7k sends: {traced} bytes")
    assert traced[2] - traced[1] < 64 * 1024


def test_rss_over_100k_sends(tmp_path, capsys):
    async def main():
        async with mailers.AsyncEngine(mailers.SQLite(str(tmp_path / "leak.db")),
                                       actor=OPS) as eng:
            setup_engine(eng.sync, "null", "null://null")
            await blast(eng, 20000, 0)  # warm-up: caches, pools, SQLite pages
            before = rss_kb()
            await blast(eng, SENDS, 20000)
            after = rss_kb()
            stats = await eng.stats()
            return before, after, stats

    before, after, stats = asyncio.run(main())
    assert stats.accepted == 20000 + SENDS
    with capsys.disabled():
        print(f"\nRSS over {SENDS} sends (null transport, SQLite): before {before} kB, "
              f"after {after} kB, growth {after - before} kB")
    assert after - before < SENDS  # under 1 kB a send, engine's own growth included
