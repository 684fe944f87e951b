"""Memory stays bounded whatever the file size: a sender's chunk buffers are
capped even when the release of zero-copy sends lags (BufferPool.room), as
it does when pyzmq's garbage-collector thread waits for the GIL."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from zfile.fileio import chunks as chunkio
from zfile.fileio.chunks import BufferPool, ChunkReader


class Tracker:
    def __init__(self, done: bool = False) -> None:
        self.done = done


async def test_room_waits_while_limit_buffers_are_held_then_reuses_them() -> None:
    pool = BufferPool(16, keep=4, limit=2)
    trackers = []
    bufs = []
    for _ in range(2):
        await pool.room()
        buf = pool.take()
        tracker = Tracker()
        pool.give(buf, [tracker])
        bufs.append(buf)
        trackers.append(tracker)
    waiting = asyncio.create_task(pool.room(timeout=30))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # both buffers are still held by sends
    trackers[0].done = True
    await asyncio.wait_for(waiting, 5)
    assert pool.take() is bufs[0]  # the released buffer, not a new one


async def test_room_gives_up_after_its_timeout() -> None:
    """A peer that stopped reading holds its buffers for good: the pool lets
    the sender go on (to its own stall detection) rather than hang."""
    pool = BufferPool(16, limit=1)
    pool.give(pool.take(), [Tracker()])
    await asyncio.wait_for(pool.room(timeout=0.05), 5)
    assert pool.take() is not None


async def test_room_counts_buffers_taken_and_not_given_back() -> None:
    pool = BufferPool(16, limit=2)
    pool.take()
    pool.take()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pool.room(timeout=30), 0.1)


@pytest.mark.parametrize("from_cache", [True, False])
async def test_a_reader_never_has_more_than_limit_buffers_while_releases_lag(
    tmp_path: Path, monkeypatch, from_cache
) -> None:
    """Sends whose trackers turn done late (pyzmq's garbage-collector thread
    starved of the GIL) do not make the reader allocate past the pool's
    limit: it waits for the oldest to be released, and every byte still
    comes out in order."""
    chunk, count, limit = 4096, 40, 6
    data = os.urandom(chunk * count)
    (tmp_path / "f").write_bytes(data)
    if not from_cache:  # every chunk read in a worker-thread hop
        monkeypatch.setattr(chunkio, "_RWF_NOWAIT", None)
    pool = BufferPool(chunk, keep=limit, limit=limit)
    reader = ChunkReader(os.open(tmp_path / "f", os.O_RDONLY), 0, len(data), chunk, pool=pool, owns_fd=True)
    allocated: set[int] = set()
    take = pool.take

    def counting_take() -> bytearray:
        buf = take()
        allocated.add(id(buf))
        return buf

    pool.take = counting_take  # type: ignore[method-assign]
    pending: list[Tracker] = []

    async def release_late() -> None:
        while True:
            await asyncio.sleep(0.002)
            if pending:
                pending.pop(0).done = True

    releaser = asyncio.create_task(release_late())
    out = []
    try:
        while not reader.done:
            buf, view = await reader.next()
            out.append(bytes(view))
            tracker = Tracker()
            pending.append(tracker)
            pool.give(buf, [tracker])
    finally:
        releaser.cancel()
        await reader.aclose()
    assert b"".join(out) == data
    assert len(allocated) <= limit
