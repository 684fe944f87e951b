"""Opening the catalog's SQLite file (:mod:`zfile.store.catalog` uses these
in its one thread): for writing, in WAL mode with ``synchronous=FULL`` and
its tables made; read-only, for a full disk; a probe write; and the file's
identity, by which a catalog deleted or replaced while open is noticed.
Each raises ``sqlite3.Error`` or ``OSError``.  SQLite: "Write-Ahead
Logging", "URI filenames" (``mode=ro``, ``immutable``).
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path

from zfile.store.catalog_rows import INTENT_BATCHES, INTENTS, SCHEMA


def connect(path: Path) -> sqlite3.Connection:
    """A connection that can write the catalog at ``path``, made (with its
    directory) when missing."""
    os.makedirs(path.parent, exist_ok=True)
    # isolation_level=None: every statement the catalog runs is atomic on its
    # own, so the module's implicit transactions would only add a commit to forget.
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"journal_mode is {mode!r}, WAL could not be enabled")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(SCHEMA)
        conn.execute(INTENTS)
        conn.execute(INTENT_BATCHES)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that only reads the catalog at ``path``."""
    # mode=ro reads the WAL too, but needs room for its index; immutable
    # needs none, and nothing writes the file while this daemon cannot.
    where = urllib.parse.quote(str(path.resolve()))
    try:
        return _reader(f"file:{where}?mode=ro")
    except sqlite3.Error:
        return _reader(f"file:{where}?mode=ro&immutable=1")


def _reader(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM files").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def probe_write(conn: sqlite3.Connection) -> None:
    """Write and roll away one row, so that a catalog opened on a full disk,
    which may still read with its WAL already there and fail only at the
    first write, fails now rather than mid-upload."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT OR REPLACE INTO intents (transfer, name) VALUES ('', '')")
        conn.execute("DELETE FROM intents WHERE transfer = ''")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def identity(path: Path) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of the file at ``path``: taken just after a
    connect, that of the file the connection holds."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


__all__ = ["connect", "connect_read_only", "identity", "probe_write"]
