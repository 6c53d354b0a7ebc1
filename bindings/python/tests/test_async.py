"""The asyncio face: awaitable sends, many in flight from one loop, event streams."""

import asyncio

import pytest

import mailers
from conftest import OPS, setup_engine


def run(coro):
    return asyncio.run(coro)


def test_thousand_concurrent_sends(db):
    async def main():
        async with mailers.AsyncEngine(db, actor=OPS) as eng:
            setup_engine(eng.sync)
            await eng.suppress("blocked@example.com")
            stream = eng.events()
            results = await asyncio.gather(
                *(eng.send(f"lead{i}@example.com", pool="out", subject="s", text="t",
                           idempotency_key=f"k{i}") for i in range(1000)),
                eng.send("blocked@example.com", pool="out", subject="s", text="t"),
                return_exceptions=True)
            sent = results[:1000]
            assert all(isinstance(r, mailers.SendResult) and r.state == "accepted" for r in sent)
            assert len({r.send_id for r in sent}) == 1000
            assert isinstance(results[1000], mailers.Suppressed)
            assert len(eng.captured("cap")) == 1000
            types = []
            async for ev in stream:
                types.append(ev.type)
                if len(types) == 1001:
                    break
            assert types.count("sent") == 1000 and types.count("suppressed") == 1
            assert (await eng.stats()).accepted == 1000
            # Every send of one key again: duplicates, settled on the loop too.
            dups = await asyncio.gather(
                *(eng.send(f"lead{i}@example.com", pool="out", subject="s", text="t",
                           idempotency_key=f"k{i}") for i in range(100)),
                return_exceptions=True)
            assert all(isinstance(d, mailers.Duplicate) for d in dups)
        assert eng.closed

    run(main())


def test_async_stream_ends_when_the_engine_closes(db):
    async def main():
        eng = await mailers.AsyncEngine.open(db, actor=OPS)
        setup_engine(eng.sync)
        stream = eng.events()
        await eng.send("ada@example.com", pool="out", subject="s", text="t")
        await eng.close()
        got = [ev.type async for ev in stream]
        assert got == ["sent"]

    run(main())


def test_cancelled_await_does_not_cancel_the_send(db):
    async def main():
        async with mailers.AsyncEngine(db, actor=OPS) as eng:
            setup_engine(eng.sync)
            fut = eng.send("ada@example.com", pool="out", subject="s", text="t")
            fut.cancel()
            await eng.flush()
            for _ in range(1000):  # up to 10 s on a loaded machine
                if eng.captured("cap"):
                    break
                await asyncio.sleep(0.01)
            assert len(eng.captured("cap")) == 1

    run(main())


def test_async_errors_and_config(db):
    async def main():
        async with mailers.AsyncEngine(db, actor=OPS) as eng:
            await eng.add_provider("cap", "capture://capture")
            await eng.upsert_mailbox(mailers.Mailbox("rep1", "rep1@brand.com", "cap"))
            await eng.upsert_pool(mailers.Pool("out", ["rep1"]))
            with pytest.raises(mailers.UnknownPool):
                await eng.send("ada@example.com", pool="nope", subject="s", text="t")
            with pytest.raises(mailers.InvalidAddress):
                await eng.send("nope", pool="out", subject="s", text="t")
            # Refused input fails its future: one bad send does not break a gather.
            ok, bad = await asyncio.gather(
                eng.send("ada@example.com", pool="out", subject="s", text="t"),
                eng.send("nope", pool="out"), return_exceptions=True)
            assert isinstance(bad, mailers.InvalidAddress) and ok.state == "accepted"
            await eng.pause("workspace")
            with pytest.raises(mailers.Paused):
                await eng.send("ada@example.com", pool="out", subject="s", text="t")
            assert [p.scope for p in await eng.pauses()] == ["workspace"]

    run(main())


def test_raising_event_callback_under_asyncio(db, caplog):
    async def main():
        async with mailers.AsyncEngine(db, actor=OPS) as eng:
            setup_engine(eng.sync)
            eng.on_event(lambda ev: (_ for _ in ()).throw(ValueError("callback failed")))
            stream = eng.events()
            await eng.send("ada@example.com", pool="out", subject="s", text="t")
            assert (await stream.__anext__()).type == "sent"

    run(main())
    assert any("callback failed" in (r.exc_text or "") for r in caplog.records)


def test_async_engine_mirrors_every_engine_call():
    import inspect

    same = {"send", "send_nowait", "events", "on_event", "captured", "close", "closed"}
    for name, fn in vars(mailers.Engine).items():
        if name.startswith("_") or not inspect.isfunction(fn) or name in same:
            continue
        mirror = getattr(mailers.AsyncEngine, name, None)
        assert inspect.iscoroutinefunction(mirror), name
        assert (list(inspect.signature(mirror).parameters)
                == list(inspect.signature(fn).parameters)), name
