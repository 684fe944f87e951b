"""The throughput machinery keeps every guarantee: early writeback, the
store's group commit (batched renames, directory fsyncs and catalog rows),
the one-hop inline commit, and bursts of replies to one client."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import blake3
import pytest

from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.errors import Exists, IntegrityError, StoreError
from zfile.fileio.writeback import Writeback
from zfile.protocol.events import Entry
from zfile.store import LocalStore
from zfile.store.catalog import Catalog

MiB = 1 << 20
MTIME_NS = 1_700_000_000_123_456_789


def b3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


@pytest.fixture
async def store(tmp_path: Path):
    s = LocalStore(tmp_path / "store")
    await s.open()
    yield s
    await s.close()


def put_inline(store: LocalStore, name: str, data: bytes, *, digest: bytes | None = None, clobber: bool = True):
    return store.put_inline(
        name=name,
        size=len(data),
        mtime_ns=MTIME_NS,
        mode=0o640,
        algo="blake3",
        clobber=clobber,
        peer="test",
        data=data,
        digest=b3(data) if digest is None else digest,
    )


def tmp_files(store: LocalStore) -> list[str]:
    return sorted(os.listdir(store.root / ".zfile" / "tmp"))


# -- early writeback ---------------------------------------------------------------


def test_writeback_is_due_every_step_and_leaves_the_bytes_intact(tmp_path: Path) -> None:
    path = tmp_path / "f"
    wb = Writeback(step=256 << 10)
    block = os.urandom(64 << 10)
    kicks = 0
    with open(path, "wb", buffering=0) as f:
        for i in range(1, 33):
            f.write(block)
            if wb.due(i * len(block)):
                wb.kick(f.fileno(), i * len(block))
                kicks += 1
        os.fsync(f.fileno())
    assert kicks == 8  # 2 MiB in steps of 256 KiB
    assert path.read_bytes() == block * 32


def test_writeback_never_raises(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "g", os.O_WRONLY | os.O_CREAT)
    os.close(fd)
    wb = Writeback(start=0, step=1)
    wb.kick(fd, 10)  # a closed descriptor: the advice is lost, nothing raised
    assert wb.due(10)


async def test_streamed_upload_across_writeback_steps_is_exact(store: LocalStore) -> None:
    data = os.urandom(20 * MiB + 5)
    up = await store.begin_upload(
        name="big.bin", size=len(data), mtime_ns=MTIME_NS, mode=0o600, algo="blake3", clobber=True, peer="t"
    )
    for offset in range(0, len(data), MiB):
        await up.write(offset, memoryview(data)[offset : offset + MiB])
    entry = await up.commit(b3(data))
    assert entry.digest == b3(data)
    assert (store.root / "big.bin").read_bytes() == data
    assert tmp_files(store) == []


# -- group commit ------------------------------------------------------------------


async def test_a_burst_of_inline_puts_is_published_whole(store: LocalStore) -> None:
    files = {f"d{i % 4}/f{i:03d}": os.urandom(i * 37 % 5000) for i in range(200)}
    entries = await asyncio.gather(*(put_inline(store, name, data) for name, data in files.items()))
    assert {e.name: e.digest for e in entries} == {name: b3(data) for name, data in files.items()}
    listed = {e.name: e.digest for e in await store.list("", "", 1000)}
    assert listed == {name: b3(data) for name, data in files.items()}
    for name, data in files.items():
        path = store.root / name
        assert path.read_bytes() == data
        assert path.stat().st_mtime_ns == MTIME_NS and path.stat().st_mode & 0o777 == 0o640
    assert tmp_files(store) == []


async def test_one_bad_file_in_a_batch_fails_alone(store: LocalStore) -> None:
    await put_inline(store, "taken", b"first")
    good = {f"ok{i}": os.urandom(100) for i in range(30)}
    jobs = [put_inline(store, name, data) for name, data in good.items()]
    jobs.insert(10, put_inline(store, "taken", b"second", clobber=False))
    jobs.insert(20, put_inline(store, "forged", b"bytes", digest=b3(b"other bytes")))
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(results[10], Exists)
    assert isinstance(results[20], IntegrityError)
    assert [r.name for r in results if isinstance(r, Entry)] == list(good)
    assert (store.root / "taken").read_bytes() == b"first"
    assert not (store.root / "forged").exists()
    listed = {e.name for e in await store.list("", "", 1000)}
    assert listed == {"taken", *good}
    assert tmp_files(store) == []


async def test_a_commit_cancelled_while_queued_is_not_published(store: LocalStore) -> None:
    async with store.publisher.lock:  # hold publishing back while the commits queue up
        jobs = {f"c{i}": asyncio.create_task(put_inline(store, f"c{i}", b"x" * i)) for i in range(10)}
        for _ in range(200):
            if len(store.publisher.queue) == len(jobs):
                break
            await asyncio.sleep(0.01)
        assert len(store.publisher.queue) == len(jobs)
        jobs["c3"].cancel()
    results = await asyncio.gather(*jobs.values(), return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert all(isinstance(r, Entry) for i, r in enumerate(results) if i != 3)
    assert not (store.root / "c3").exists()
    assert {e.name for e in await store.list("", "", 1000)} == set(jobs) - {"c3"}
    assert tmp_files(store) == []


async def test_catalog_put_many_is_all_or_nothing(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    await catalog.open()
    try:

        def entry(name: str, size: object) -> Entry:
            return Entry(name, size, MTIME_NS, 0o644, "blake3", b"\x01" * 32, 1.0, id=name, peer="p")  # type: ignore[arg-type]

        await catalog.put_many([entry("a", 1), entry("b", 2)])
        with pytest.raises(StoreError):
            await catalog.put_many([entry("c", 3), entry("d", {"not": "an int"})])
        assert [e.name for e in await catalog.all_entries()] == ["a", "b"]
        await catalog.put_many([entry("a", 10), entry("a", 11)])  # a later entry of a name wins
        assert (await catalog.get("a")).size == 11
    finally:
        await catalog.close()


# -- end to end: one client, many small files at once -----------------------------


@pytest.mark.slow
async def test_many_small_files_from_one_client_all_verified(daemon, tmp_path: Path) -> None:
    """More transfers in flight than the daemon's per-peer send pipe holds:
    the burst of PUT-OKs a group commit produces must all reach the client."""
    src = tmp_path / "src"
    src.mkdir()
    files = {}
    for i in range(300):
        data = os.urandom(4096)
        (src / f"s{i:03d}").write_bytes(data)
        files[f"s{i:03d}"] = b3(data)
    async with Client(ClientConfig(daemon.endpoint, concurrency=64)) as client:
        sem = asyncio.Semaphore(64)

        async def one(name: str):
            async with sem:
                return await client.put(src / name, name)

        results = await asyncio.gather(*(one(n) for n in files))
        assert {r.name: r.digest for r in results} == files
        assert {e.name: e.digest async for e in client.list("s")} == files
    for name in files:
        assert (daemon.root / name).read_bytes() == (src / name).read_bytes()
