"""Opening the catalog's SQLite file: WAL and its tables, read-only, the
probe write, and the file's identity."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from zfile.store.catalog_file import connect, connect_read_only, identity, probe_write


def test_a_catalog_is_made_in_wal_mode_with_its_tables(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "catalog.db"
    conn = connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"files", "intents", "intent_batches"}
        probe_write(conn)
        assert conn.execute("SELECT count(*) FROM intents").fetchone()[0] == 0
        assert identity(path) == (os.stat(path).st_dev, os.stat(path).st_ino)
    finally:
        conn.close()


def test_a_read_only_connection_reads_and_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    connect(path).close()
    conn = connect_read_only(path)
    try:
        assert conn.execute("SELECT count(*) FROM files").fetchone()[0] == 0
        with pytest.raises(sqlite3.OperationalError):
            probe_write(conn)
    finally:
        conn.close()


def test_a_file_that_is_not_a_catalog_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    path.write_bytes(b"not a database, " * 64)
    with pytest.raises(sqlite3.DatabaseError):
        connect(path)
    with pytest.raises(sqlite3.DatabaseError):
        connect_read_only(path)
