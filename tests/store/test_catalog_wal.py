"""SQLite's files beside the catalog (its write-ahead log and that log's
shared-memory index) deleted or replaced under a running daemon."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from zfile.protocol.events import Entry
from zfile.store import LocalStore, catalog_file
from zfile.store.catalog import Catalog

from ..conftest import start_daemon, zfile_cli


def _wait_for(daemon, line: str) -> None:
    for _ in range(300):
        if line in daemon.log_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"no {line!r} in the log:\n{daemon.log_text()}")


@pytest.mark.slow
def test_rows_recorded_after_the_log_is_deleted_survive_kill_9(tmp_path: Path) -> None:
    """Before, SQLite went on writing the deleted log, and a daemon killed
    before its next checkpoint lost the rows of every file stored since:
    the next start listed none of them."""
    root = tmp_path / "store"
    daemon = start_daemon(root, tmp_path / "daemon.log")
    wal = root / ".zfile" / "catalog.db-wal"
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    try:
        zfile_cli("send", str(first), "--to", daemon.endpoint, "--quiet")
        wal.unlink()
        _wait_for(daemon, f"WARNING zfile.server: SQLite's write-ahead log {wal} of the catalog was deleted")
        zfile_cli("send", str(second), "--to", daemon.endpoint, "--quiet")
        assert wal.exists()  # the catalog writes to a log a later start reads
    finally:
        daemon.proc.kill()
        daemon.proc.wait(timeout=30)
    again = start_daemon(root, tmp_path / "daemon.log")
    try:
        listed = json.loads(zfile_cli("ls", "--from", again.endpoint, "--json").stdout)
        assert sorted(e["name"] for e in listed) == ["first.txt", "second.txt"]
    finally:
        assert again.stop() == 0, again.log_text()


def _entry(name: str) -> Entry:
    return Entry(name=name, size=1, mtime_ns=0, mode=0o644, algo="blake3", digest=b"\0" * 32, received=0, id=name)


async def _names(root: Path) -> list[str]:
    catalog = Catalog(root / ".zfile" / "catalog.db")
    await catalog.open()
    try:
        return sorted(e.name for e in await catalog.all_entries())
    finally:
        await catalog.close()


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
async def test_a_side_file_deleted_is_made_again_and_its_rows_kept(tmp_path: Path, suffix: str) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    await store.open()
    side = root / ".zfile" / f"catalog.db{suffix}"
    what = {"-wal": "write-ahead log", "-shm": "write-ahead log's index"}[suffix]
    try:
        assert store.mend() is None
        await store.catalog.put(_entry("before"))
        side.unlink()
        assert store.lost() is None  # deleted is mended, not lost
        assert await asyncio.to_thread(store.mend) == (
            f"SQLite's {what} {side} of the catalog was deleted while the daemon ran: closed the catalog, "
            "which wrote what the log held into it, and opened it again with new ones"
        )
        assert side.exists()
        assert store.mend() is None and store.lost() is None
        await store.catalog.put(_entry("after"))
        # What a restart after a crash reads, while this connection is still open:
        copy = tmp_path / "copy" / ".zfile"
        copy.mkdir(parents=True)
        for name in ("catalog.db", "catalog.db-wal"):
            shutil.copyfile(root / ".zfile" / name, copy / name)
        assert await _names(tmp_path / "copy") == ["after", "before"]
    finally:
        await store.close()
    assert await _names(root) == ["after", "before"]


async def test_both_side_files_deleted_are_named_in_one_sentence(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    await store.open()
    wal, shm = (root / ".zfile" / f"catalog.db{s}" for s in ("-wal", "-shm"))
    try:
        wal.unlink()
        shm.unlink()
        assert await asyncio.to_thread(store.mend) == (
            f"SQLite's write-ahead log {wal} and write-ahead log's index {shm} of the catalog were deleted while "
            "the daemon ran: closed the catalog, which wrote what the log held into it, and opened it again with "
            "new ones"
        )
    finally:
        await store.close()


async def test_a_write_ahead_log_replaced_is_lost_and_its_rows_kept(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    await store.open()
    wal = root / ".zfile" / "catalog.db-wal"
    try:
        await store.catalog.put(_entry("kept"))
        (tmp_path / "other").write_bytes(b"not a log")
        os.replace(tmp_path / "other", wal)
        assert store.mend() is None
        assert store.lost() == (
            f"SQLite's write-ahead log {wal} of the catalog was replaced by another file while the daemon ran; "
            "closing the catalog writes what its log held into it"
        )
    finally:
        await store.close()
    assert store.lost() is None
    assert await _names(root) == ["kept"]


async def test_a_catalog_that_cannot_be_opened_again_is_lost(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    await store.open()
    try:
        (root / ".zfile" / "catalog.db-wal").unlink()

        def refuse(path):
            raise sqlite3.OperationalError("unable to open database file")

        monkeypatch.setattr(catalog_file, "connect", refuse)
        assert await asyncio.to_thread(store.mend) is None
        assert store.lost() == (
            f"the catalog {root / '.zfile' / 'catalog.db'} could not be opened again after its log went: "
            "unable to open database file; closing the catalog writes what its log held into it"
        )
    finally:
        monkeypatch.undo()
        await store.close()


async def test_a_read_only_connection_watches_no_side_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    await store.open()
    try:
        files = catalog_file.CatalogFiles(root / ".zfile" / "catalog.db")
        files.record(writable=False)  # as a read-only connection, which may have no log at all
        (root / ".zfile" / "catalog.db-wal").unlink()
        assert files.missing() == [] and files.replaced() is None and files.lost() is None
        files.record(writable=True)
        assert files.missing() == [] and files.replaced() is None
    finally:
        await store.close()
