"""Early writeback shared among files written at once (WritebackBudget), and
dropping a file's pages once its fsync has made them clean."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import blake3
import pytest

from zfile.fileio.writeback import UPLOADS, Writeback, WritebackBudget, drop
from zfile.store import LocalStore

MiB = 1 << 20

PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)


def test_a_budget_divides_its_steps_among_its_writers() -> None:
    budget = WritebackBudget(total=64 * MiB, least=MiB, most=8 * MiB)
    first = budget.writer()
    assert first.step == 8 * MiB  # one writer: capped at most
    others = [budget.writer() for _ in range(15)]
    assert budget.writers == 16
    assert first.step == 2 * MiB  # 64 MiB / (2 x 16)
    crowd = [budget.writer() for _ in range(84)]
    assert first.step == MiB  # 100 writers: never under least
    for w in others + crowd:
        w.close()
    assert budget.writers == 1
    assert first.step == 8 * MiB  # grows back when the others leave


def test_closing_a_writer_twice_leaves_the_budget_once() -> None:
    budget = WritebackBudget()
    w = budget.writer()
    budget.writer()
    w.close()
    w.close()
    assert budget.writers == 1
    assert w.step == budget.step  # a closed writer keeps the last step it had


def test_a_writer_kicks_at_the_budgets_step(tmp_path: Path) -> None:
    budget = WritebackBudget(total=4 * MiB, least=MiB // 4, most=MiB)
    writers = [budget.writer() for _ in range(4)]  # 4 MiB / (2 x 4): 512 KiB each
    wb = writers[0]
    block = os.urandom(64 << 10)
    kicks = 0
    path = tmp_path / "f"
    with open(path, "wb", buffering=0) as f:
        for i in range(1, 33):
            f.write(block)
            if wb.due(i * len(block)):
                wb.kick(f.fileno(), i * len(block))
                kicks += 1
    assert kicks == 4  # 2 MiB in steps of 512 KiB
    assert path.read_bytes() == block * 32


def test_a_budget_refuses_a_nonsense_range() -> None:
    with pytest.raises(ValueError):
        WritebackBudget(least=0)
    with pytest.raises(ValueError):
        WritebackBudget(least=2 * MiB, most=MiB)


def cached_pages(path: Path) -> int:
    """How many pages of ``path`` the page cache holds (mincore(2) on a
    private mapping of the file, whose untouched pages are the cache's)."""
    size = path.stat().st_size
    vec = (ctypes.c_ubyte * ((size + PAGE - 1) // PAGE))()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        start = ctypes.c_char.from_buffer(mm)
        try:
            if _libc.mincore(ctypes.c_void_p(ctypes.addressof(start)), ctypes.c_size_t(size), vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
        finally:
            del start  # the mapping cannot close while a pointer into it lives
    return sum(b & 1 for b in vec)


def test_drop_releases_the_pages_of_a_synced_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(MiB))
    assert cached_pages(path) == MiB // PAGE
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        drop(fd)
    finally:
        os.close(fd)
    # Pages still in another CPU's LRU batch may stay: at most a batch's worth.
    assert cached_pages(path) <= 32
    drop(-1)  # a bad descriptor: nothing raised


async def test_an_upload_holds_a_share_of_the_budget_while_live(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    await store.open()
    try:
        before = UPLOADS.writers
        data = os.urandom(3 * MiB)
        ups = [
            await store.begin_upload(
                name=f"f{i}", size=len(data), mtime_ns=1, mode=0o600, algo="blake3", clobber=True, peer="t"
            )
            for i in range(3)
        ]
        assert UPLOADS.writers == before + 3
        for offset in range(0, len(data), MiB):
            await ups[0].write(offset, data[offset : offset + MiB])
        await ups[0].commit(blake3.blake3(data).digest())
        await ups[1].suspend()
        await ups[2].abort()
        assert UPLOADS.writers == before
        # Dropped after its fsync (but for pages still in a CPU's LRU batch).
        assert cached_pages(store.root / "f0") <= 64
        assert (store.root / "f0").read_bytes() == data
    finally:
        await store.close()


def test_a_plain_writeback_keeps_its_fixed_step() -> None:
    wb = Writeback(step=3 * MiB)
    wb.close()
    assert wb.step == 3 * MiB
