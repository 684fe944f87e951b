"""The daemon's sign of life during a long commit (zfile.server.keepalive)."""

from __future__ import annotations

import asyncio

import pytest

from zfile.server.keepalive import keep_alive


async def test_work_longer_than_the_interval_is_pinged_until_it_ends():
    pings = 0
    pinged_twice = asyncio.Event()

    async def ping() -> None:
        nonlocal pings
        pings += 1
        if pings == 2:
            pinged_twice.set()

    async def work() -> str:
        # Ends after the second ping, not after a time: on a loaded machine
        # a timer of the work and one of the pings may fall due together.
        await pinged_twice.wait()
        return "done"

    assert await asyncio.wait_for(keep_alive(work(), ping, interval=0.02), 30) == "done"
    assert pings >= 2


async def test_quick_work_is_not_pinged_and_its_error_is_raised():
    pinged = []

    async def ping() -> None:
        pinged.append(1)

    async def fail() -> None:
        raise ValueError("no")

    async def quick() -> int:
        return 7

    assert await keep_alive(quick(), ping, interval=10) == 7
    with pytest.raises(ValueError, match="no"):
        await keep_alive(fail(), ping, interval=10)
    assert pinged == []


async def test_a_cancel_reaches_the_work_and_waits_for_its_end():
    ended = asyncio.Event()

    async def ping() -> None:
        pass

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.01)  # its clean-up runs to the end
            ended.set()

    task = asyncio.ensure_future(keep_alive(work(), ping, interval=0.01))
    await asyncio.sleep(0.03)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended.is_set()


async def test_a_failing_ping_cancels_the_work():
    cancelled = asyncio.Event()

    async def ping() -> None:
        raise ConnectionError("peer gone")

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(ConnectionError):
        await keep_alive(work(), ping, interval=0.01)
    assert cancelled.is_set()


@pytest.mark.slow
@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "silent"])
async def test_a_commit_longer_than_the_clients_timeout_answers_while_kept_alive(tmp_path, monkeypatch, keepalive):
    """A commit of 3.5 s (made slow on purpose: the store's real commit, late)
    against a client that waits 2 s for any message: with the daemon's
    keepalive the send succeeds; without it (an interval past the commit)
    the client gives up, which is what the keepalive prevents."""
    from zfile.client.client import Client
    from zfile.client.config import ClientConfig
    from zfile.errors import PeerTimeout
    from zfile.server import keepalive as keepalive_module
    from zfile.server.config import ServerConfig
    from zfile.server.server import Server

    from ..conftest import free_port
    from ..rawpeer import MiB, digest_of, make_file

    if not keepalive:
        monkeypatch.setattr(keepalive_module, "KEEPALIVE", 30.0)
    server = Server(ServerConfig(bind=f"tcp://127.0.0.1:{free_port()}", root=str(tmp_path / "store")))
    await server.startup()
    begin = server.store.begin_upload

    async def begin_slow(**kw):
        upload = await begin(**kw)
        commit = upload.commit

        async def late_commit(digest: bytes):
            await asyncio.sleep(3.5)
            return await commit(digest)

        upload.commit = late_commit
        return upload

    monkeypatch.setattr(server.store, "begin_upload", begin_slow)
    src = make_file(tmp_path / "slow.bin", 3 * MiB)
    try:
        async with Client(ClientConfig(server.endpoint, timeout=2.0)) as client:
            if keepalive:
                assert (await client.put(src, "slow.bin")).digest == digest_of(src)
            else:
                with pytest.raises(PeerTimeout):
                    await client.put(src, "slow.bin")
    finally:
        await server.shutdown()
