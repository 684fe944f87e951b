"""The bounds on partials: which are reclaimed, and that the store keeps
what is on disk within them, oldest first, sparing live uploads."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from zfile.store import LocalStore
from zfile.store.litter import Limits, PartialBounds

from .test_local import begin

BIG = 1 << 60


def bounds(**limits: int) -> PartialBounds:
    return PartialBounds(Limits(**{"count": BIG, "bytes": BIG, "count_per_peer": BIG, "bytes_per_peer": BIG, **limits}))


def test_within_bounds_nothing_is_reclaimed() -> None:
    b = bounds(count=2)
    b.note("a", "p", 10, 1.0)
    b.note("b", "p", 10, 2.0)
    assert b.over(lambda t: False) == []


def test_the_oldest_go_first_and_live_ones_never() -> None:
    b = bounds(count=2)
    for k, t in enumerate("abcde"):
        b.note(t, "p", 1, float(10 - k if t != "a" else 0))  # a oldest, then e, d, c, b
    assert b.over(lambda t: False) == ["a", "e", "d"]
    assert b.over(lambda t: t in ("a", "e")) == ["d", "c", "b"]


def test_bytes_count_in_all_and_per_peer() -> None:
    b = bounds(bytes=100, count_per_peer=1)
    b.note("old-big", "x", 80, 1.0)
    b.note("new-big", "y", 80, 2.0)
    assert b.over(lambda t: False) == ["old-big"]
    b.forget("old-big")
    b.note("x1", "x", 1, 3.0)
    b.note("x2", "x", 1, 4.0)
    # y alone is within every bound; x holds two partials, one over its own.
    assert b.over(lambda t: False) == ["x1"]
    b = bounds(bytes_per_peer=50)
    b.note("x1", "x", 30, 1.0)
    b.note("y1", "y", 30, 2.0)
    b.note("x2", "x", 30, 3.0)
    assert b.over(lambda t: False) == ["x1"]


async def _settled(store: LocalStore) -> None:
    await asyncio.wait_for(store.keeper.settled(), 10)


async def test_put_then_cancel_leaves_at_most_the_bound(tmp_path: Path) -> None:
    """Forty uploads begun and suspended by one peer leave its five newest
    partials; another peer's partial stays; the newest one still resumes."""
    limits = Limits(count=8, bytes=BIG, count_per_peer=5, bytes_per_peer=BIG)
    store = LocalStore(tmp_path / "root", partial_limits=limits)
    await store.open()
    try:
        other = await begin(store, "other.bin", 10, peer="honest")
        await other.write(0, b"12345")
        await other.suspend()
        for k in range(40):
            up = await begin(store, f"litter/{k}.bin", 10, peer="greedy")
            await up.write(0, b"x")
            await up.suspend()
            await _settled(store)
        names = sorted(os.listdir(store.root / ".zfile" / "tmp"))
        assert len(names) == 2 * 6, names
        assert (await begin(store, "other.bin", 10, peer="honest")).offset == 5
        assert (await begin(store, "litter/39.bin", 10, peer="greedy")).offset == 1
        assert (await begin(store, "litter/0.bin", 10, peer="greedy")).offset == 0
    finally:
        await store.close()


async def test_a_store_opened_over_the_bounds_reclaims_the_oldest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    await store.open()
    transfers = []
    for k in range(6):
        up = await begin(store, f"f{k}.bin", 10)
        await up.write(0, b"x")
        await up.suspend()
        transfers.append(up.transfer)
        touched = time.time() - 100 + k  # f0 the oldest, all well within the TTL
        os.utime(store.root / ".zfile" / "tmp" / f"{up.transfer}.json", (touched, touched))
    await store.close()
    store = LocalStore(tmp_path / "root", partial_limits=Limits(count=3))
    await store.open()
    try:
        assert len(store.partials) == 3
        assert sorted(os.listdir(store.root / ".zfile" / "tmp")) == sorted(
            f"{t}.{ext}" for t in transfers[3:] for ext in ("json", "part")
        )
    finally:
        await store.close()
