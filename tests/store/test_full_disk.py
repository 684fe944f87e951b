"""A catalog on a full disk: opened read-only, reads served, writes refused
no-space in zfile's words, writable again once there is room.  The disk is
faked here; tests/server/test_limits.py fills a real tmpfs when it can."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from zfile.errors import NoSpace
from zfile.protocol.events import Entry
from zfile.store.catalog import Catalog

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
