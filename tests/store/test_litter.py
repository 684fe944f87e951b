"""The bounds on partials: which are reclaimed, and that the store keeps
what is on disk within them, oldest first, sparing live uploads."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from zfile.store import LocalStore
from zfile.store.litter import Limits, PartialBounds

from .test_local import b3, begin, upload

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


def test_partials_are_found_by_the_name_of_their_file() -> None:
    b = bounds()
    b.note("t1", "p", 1, 1.0, "a.bin")
    b.note("t2", "p", 1, 2.0, "a.bin")
    b.note("t3", "p", 1, 3.0, "b.bin")
    b.note("t4", "p", 1, 4.0)  # a partial whose state file gave no name
    assert sorted(b.of_name("a.bin")) == ["t1", "t2"]
    b.forget("t1")
    b.note("t2", "p", 5, 5.0, "c.bin")  # noted again under another name
    assert b.of_name("a.bin") == []
    assert b.of_name("c.bin") == ["t2"]
    assert b.of_name("") == []


def _files(store: LocalStore) -> list[str]:
    return sorted(os.listdir(store.root / ".zfile" / "tmp"))


async def test_storing_a_file_drops_its_older_partials_only(tmp_path: Path) -> None:
    """A partial begun for an older version of a file goes once the file is
    stored anew, by a streamed upload or in a batch; a partial of another
    file stays, and so does one a live upload of the same file holds."""
    store = LocalStore(tmp_path / "root")
    await store.open()
    try:
        old = await begin(store, "a.bin", 10, mtime_ns=1)
        await old.write(0, b"12345")
        await old.suspend()
        other = await begin(store, "b.bin", 10)
        await other.write(0, b"123")
        await other.suspend()
        live = await begin(store, "a.bin", 20, mtime_ns=3)
        await live.write(0, b"x")
        assert len(_files(store)) == 6
        await upload(store, "a.bin", b"new bytes", mtime_ns=2)
        await _settled(store)
        assert _files(store) == sorted(
            f"{t}.{ext}" for t in (other.transfer, live.transfer) for ext in ("json", "part")
        )
        await live.suspend()
        # The batch path (an inline PUT is a batch of one) drops the one just suspended.
        await store.put_inline(
            name="a.bin", size=3, mtime_ns=4, mode=0o600, algo="blake3", clobber=True, peer="p",
            data=b"abc", digest=b3(b"abc"),
        )  # fmt: skip
        await _settled(store)
        assert _files(store) == sorted(f"{other.transfer}.{ext}" for ext in ("json", "part"))
        assert (await begin(store, "b.bin", 10)).offset == 3
    finally:
        await store.close()


async def test_a_partial_left_by_an_earlier_run_is_dropped_too(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    await store.open()
    up = await begin(store, "d/a.bin", 10, mtime_ns=1)
    await up.write(0, b"12345")
    await up.suspend()
    await store.close()
    store = LocalStore(tmp_path / "root")
    await store.open()
    try:
        assert len(_files(store)) == 2
        entry = await upload(store, "d/a.bin", b"v2", mtime_ns=2)
        await _settled(store)
        assert _files(store) == []
        assert (await store.lookup("d/a.bin")).digest == entry.digest
    finally:
        await store.close()
