"""A catalog on a full disk: opened read-only, reads served, writes refused
no-space in zfile's words, writable again once there is room; its reserve
spent to record what is already on the disk.  The disk is
faked here; tests/server/test_limits.py fills a real tmpfs when it can.
And a process out of file descriptors (really spent): busy, then served."""

from __future__ import annotations

import contextlib
import os
import resource
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from zfile.errors import Busy, NoSpace, NotFound
from zfile.protocol.events import Entry
from zfile.store import LocalStore
from zfile.store.catalog import Catalog
from zfile.store.reserve import Reserve, size_for

from .test_local import b3, begin, upload

ENTRY = Entry("kept.bin", 3, 1, 0o644, "blake3", b"d" * 32, 1.0, "u-1", "peer")
NEW = Entry("new.bin", 3, 1, 0o644, "blake3", b"e" * 32, 2.0, "u-2", "peer")


async def test_a_catalog_that_cannot_be_opened_for_writing_on_a_full_disk_serves_reads(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    path = tmp_path / "catalog.db"
    catalog = Catalog(path)
    await catalog.open()
    await catalog.put(ENTRY)
    await catalog.close()

    def full(self: Catalog) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Catalog, "_connect", full)
    monkeypatch.setattr(Catalog, "_disk_full", lambda self: True)
    catalog = Catalog(path)
    await catalog.open()
    try:
        assert catalog.read_only
        assert [r.message for r in caplog.records if "read-only" in r.message] != []
        assert await catalog.get("kept.bin") == ENTRY
        assert await catalog.list("", "", 10) == [ENTRY]
        with pytest.raises(NoSpace) as info:
            await catalog.put(NEW)
        assert "disk I/O" not in str(info.value) and "database" not in str(info.value)
        assert not await catalog.try_writable()  # still full
        assert not await catalog.deletable()  # opened read-only: a removal would leave its row
        monkeypatch.undo()
        assert await catalog.try_writable()
        await catalog.put(NEW)
        assert [e.name for e in await catalog.list("", "", 10)] == ["kept.bin", "new.bin"]
    finally:
        await catalog.close()


async def test_a_full_disk_met_by_a_write_is_no_space_and_makes_the_catalog_read_only(
    tmp_path: Path, monkeypatch
) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    await catalog.open()
    try:
        full = sqlite3.OperationalError("database or disk is full")
        full.sqlite_errorcode = sqlite3.SQLITE_FULL

        real = catalog._run

        async def run(doing, fn, *args, quiet=False):
            def failing(*a):
                raise full

            return await real(doing, failing, *args, quiet=quiet)

        monkeypatch.setattr(catalog, "_run", run)
        with pytest.raises(NoSpace) as info:
            await catalog.put(NEW)
        assert "database or disk is full" not in str(info.value)
        assert catalog.read_only
    finally:
        monkeypatch.undo()
        await catalog.close()


class _FullOnce:
    """A connection whose next ``calls`` statements fail SQLITE_FULL."""

    def __init__(self, conn: sqlite3.Connection, calls: int = 1) -> None:
        self._conn = conn
        self.calls = calls

    def execute(self, *args):
        if self.calls:
            self.calls -= 1
            full = sqlite3.OperationalError("database or disk is full")
            full.sqlite_errorcode = sqlite3.SQLITE_FULL
            raise full
        return self._conn.execute(*args)


def _full_next(monkeypatch, catalog: Catalog, calls: int = 1) -> _FullOnce:
    conn = _FullOnce(catalog._conn, calls)
    monkeypatch.setattr(catalog, "_db", lambda: conn)
    return conn


async def test_a_row_of_a_change_made_on_a_full_disk_is_written_by_freeing_the_reserve(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    reserve = tmp_path / "catalog.reserve"
    await catalog.open()
    try:
        assert reserve.stat().st_blocks * 512 >= 256 << 10 and not catalog.read_only
        _full_next(monkeypatch, catalog)
        await catalog.put(NEW)  # written at the second try
        monkeypatch.undo()
        assert await catalog.get("new.bin") == NEW
        assert not reserve.exists()
        assert [r.message for r in caplog.records if "freed its reserve to record 'new.bin'" in r.message] != []
        assert catalog.read_only  # no room is left for the next one
        with pytest.raises(NoSpace):
            await catalog.put(ENTRY)
        assert await catalog.try_writable()  # this disk has room: the reserve is held again
        assert reserve.stat().st_blocks * 512 >= 256 << 10
        await catalog.put(ENTRY)
    finally:
        monkeypatch.undo()
        await catalog.close()


async def test_with_its_reserve_spent_a_full_disk_is_no_space(tmp_path: Path, monkeypatch) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    await catalog.open()
    try:
        _full_next(monkeypatch, catalog, calls=2)
        with pytest.raises(NoSpace):
            await catalog.delete_many(["kept.bin"])
        assert catalog.read_only
        assert not (tmp_path / "catalog.reserve").exists()
    finally:
        monkeypatch.undo()
        await catalog.close()


async def test_commit_intents_on_a_full_disk_keep_the_reserve(tmp_path: Path, monkeypatch) -> None:
    """Nothing is on the disk yet when intents are written: they fail, and
    the reserve stays for the rows of what is."""
    catalog = Catalog(tmp_path / "catalog.db")
    await catalog.open()
    try:
        _full_next(monkeypatch, catalog)
        with pytest.raises(NoSpace):
            await catalog.add_intents([("t-1", NEW)])
        assert (tmp_path / "catalog.reserve").exists()
        assert catalog.read_only
    finally:
        monkeypatch.undo()
        await catalog.close()


async def test_a_disk_with_no_room_for_the_reserve_opens_the_catalog_read_only(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    def no_room(self: Reserve) -> bool:
        self.size = 256 << 10
        return False

    monkeypatch.setattr(Reserve, "hold", no_room)
    catalog = Catalog(tmp_path / "catalog.db")
    await catalog.open()
    try:
        assert catalog.read_only
        assert [r.message for r in caplog.records if "no room for its reserve of 262144 bytes" in r.message] != []
        assert await catalog.get("kept.bin") is None  # reads are served
        assert not await catalog.try_writable()
        monkeypatch.undo()
        assert await catalog.try_writable()
        await catalog.put(NEW)
    finally:
        await catalog.close()


def test_the_reserve_is_a_64th_of_the_disk_within_bounds() -> None:
    assert size_for(16 << 20) == 256 << 10
    assert size_for(512 << 20) == 8 << 20
    assert size_for(1 << 40) == 16 << 20


async def test_a_removal_is_tried_on_a_catalog_a_full_disk_made_read_only(tmp_path: Path, monkeypatch) -> None:
    """The files a removal unlinks free blocks: its rows' deletion is
    tried, where an upload would be refused."""
    catalog = Catalog(tmp_path / "catalog.db")
    await catalog.open()
    try:
        await catalog.put(ENTRY)
        _full_next(monkeypatch, catalog, calls=2)
        with pytest.raises(NoSpace):
            await catalog.put(NEW)
        monkeypatch.undo()
        monkeypatch.setattr(Catalog, "_disk_full", lambda self: True)
        assert catalog.read_only and not await catalog.try_writable()
        assert await catalog.deletable()
        await catalog.delete_many(["kept.bin"])
        assert await catalog.get("kept.bin") is None
        with pytest.raises(NoSpace):
            await catalog.put(NEW)
    finally:
        monkeypatch.undo()
        await catalog.close()


async def test_a_streamed_upload_the_full_disk_left_unrecorded_is_recorded_once_writable(
    tmp_path: Path, monkeypatch
) -> None:
    """Its file reached its final name but neither its row nor, with the
    reserve spent, a second try could be written: it is recorded from its
    state file as soon as the catalog can be written again, not at the
    next start."""
    store = LocalStore(tmp_path / "root")
    await store.open()
    try:
        data = b"streamed bytes"
        up = await begin(store, "s.bin", len(data))
        await up.write(0, data)
        _full_next(monkeypatch, store.catalog, calls=2)
        with pytest.raises(NoSpace):
            await up.commit(b3(data))
        monkeypatch.undo()
        assert (store.root / "s.bin").read_bytes() == data
        with pytest.raises(NotFound):
            await store.lookup("s.bin")
        store._retry_writable_at = 0.0  # the next upload tries the catalog again now, not in a few seconds
        await upload(store, "next.bin", b"n")
        assert (await store.lookup("s.bin")).digest == b3(data)
        assert sorted(e.name for e in await store.list("", "", 10)) == ["next.bin", "s.bin"]
        assert [p for p in (store.root / ".zfile" / "tmp").iterdir()] == [] and len(store.partials) == 0
    finally:
        monkeypatch.undo()
        await store.close()


@contextlib.contextmanager
def descriptors_spent() -> Iterator[None]:
    """This process out of file descriptors: the soft limit brought down to
    a few over what is open now, those few filled, all given back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
    try:
        with contextlib.suppress(OSError):
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_out_of_descriptors_is_busy_and_passes(store: LocalStore) -> None:
    # EMFILE says other transfers hold the descriptors: busy, which clients retry, not a failure.
    with descriptors_spent(), pytest.raises(Busy) as info:
        await begin(store, "late.bin", 10)
    assert str(info.value) == (
        "could not prepare the partial file of 'late.bin': Too many open files (the daemon holds as many "
        "files open as its limit allows; try again shortly)"
    )
    # Once descriptors are free again the same upload goes through.
    assert (await upload(store, "late.bin", b"0123456789")).size == 10
