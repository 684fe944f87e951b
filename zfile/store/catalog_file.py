"""Opening the catalog's SQLite file (:mod:`zfile.store.catalog` uses these
in its one thread): for writing, in WAL mode with ``synchronous=FULL`` and
its tables made; read-only, for a full disk; a probe write; and the
identities of the file and of the two SQLite keeps beside it, by which one
deleted or replaced while open is noticed.
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


#: What SQLite keeps beside a catalog in WAL mode while it is open: the
#: write-ahead log, and the log's index in shared memory (SQLite,
#: "Write-Ahead Logging", "The WAL File", "The WAL-Index File").
SIDE_FILES = {"-wal": "write-ahead log", "-shm": "write-ahead log's index"}


def side_path(path: Path, suffix: str) -> Path:
    """The file of :data:`SIDE_FILES` ``suffix`` beside the catalog at ``path``."""
    return path.with_name(path.name + suffix)


class CatalogFiles:
    """The catalog's file at ``path`` and, for a writable connection, those
    of :data:`SIDE_FILES` beside it, as the connection found them when it
    opened (:meth:`record`), against what is at their paths now.  Each look
    is a ``stat(2)``; what cannot be looked at is not judged."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: (st_dev, st_ino) of the catalog's file; None while it is not open.
        self._catalog: tuple[int, int] | None = None
        #: The same of the side files, by suffix.
        self._known: dict[str, tuple[int, int]] = {}

    def record(self, writable: bool) -> None:
        """Take the identities of the files a connection just opened holds
        (both side files, once :func:`connect` returned)."""
        self._catalog = identity(self.path)
        known: dict[str, tuple[int, int]] = {}
        for suffix in SIDE_FILES if writable else ():
            try:
                known[suffix] = identity(side_path(self.path, suffix))
            except FileNotFoundError:
                pass
        self._known = known

    def forget(self) -> None:
        self._catalog, self._known = None, {}

    def lost(self) -> str | None:
        """A sentence saying the catalog's file was deleted, or another put
        in its place, while open; else None.  SQLite goes on with the file
        it opened, which no start would read."""
        if self._catalog is None:
            return None
        try:
            now = identity(self.path)
        except FileNotFoundError:
            return f"the catalog {self.path} was deleted while the daemon ran"
        except OSError:
            return None
        if now != self._catalog:
            return f"the catalog {self.path} was replaced by another file while the daemon ran"
        return None

    def missing(self) -> list[str]:
        """The suffixes of the recorded files no longer at their paths."""
        return [s for s in self._known if not os.path.lexists(side_path(self.path, s))]

    def replaced(self) -> str | None:
        """A sentence naming a recorded file now another at its path, or None."""
        for suffix, known in self._known.items():
            side = side_path(self.path, suffix)
            try:
                now = identity(side)
            except OSError:
                continue  # deleted, or not to be looked at: not another file
            if now != known:
                what = SIDE_FILES[suffix]
                return f"SQLite's {what} {side} of the catalog was replaced by another file while the daemon ran"
        return None

    def deleted(self, suffixes: list[str]) -> str:
        """The sentence :meth:`Catalog.mend <zfile.store.catalog.Catalog.mend>`
        logs once the files of ``suffixes`` were found deleted and made again."""
        names = " and ".join(f"{SIDE_FILES[s]} {side_path(self.path, s)}" for s in suffixes)
        return (
            f"SQLite's {names} of the catalog {'was' if len(suffixes) == 1 else 'were'} deleted while the daemon "
            "ran: closed the catalog, which wrote what the log held into it, and opened it again with new ones"
        )


def identity(path: Path) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of the file at ``path``: taken just after a
    connect, that of the file the connection holds."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


__all__ = [
    "SIDE_FILES",
    "connect",
    "connect_read_only",
    "identity",
    "CatalogFiles",
    "probe_write",
    "side_path",
]
