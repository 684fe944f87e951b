"""The catalog's tables, and the mapping between their rows and :class:`Entry`.

``files`` holds one row per committed file; ``intents`` and
``intent_batches`` the commit intents of files about to be renamed into
place (:mod:`zfile.store.catalog` says when each is written).
"""

from __future__ import annotations

from typing import Any

from zfile.protocol.events import Entry

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    mode INTEGER,
    algo TEXT,
    digest BLOB,
    received REAL,
    peer TEXT
)
"""
INTENTS = """
CREATE TABLE IF NOT EXISTS intents (
    transfer TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    mode INTEGER,
    algo TEXT,
    digest BLOB,
    received REAL,
    id TEXT,
    peer TEXT
)
"""
# One row per group-commit batch: its intents packed (msgpack) into one blob,
# so that a batch of small files costs one row here, not one per file.
INTENT_BATCHES = """
CREATE TABLE IF NOT EXISTS intent_batches (
    batch INTEGER PRIMARY KEY,
    intents BLOB NOT NULL
)
"""
COLUMNS = "name, size, mtime_ns, mode, algo, digest, received, id, peer"
INSERT = f"INSERT OR REPLACE INTO files ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


def row_of(e: Entry) -> tuple[Any, ...]:
    """The values of ``e`` in the order of :data:`COLUMNS`."""
    return (e.name, e.size, e.mtime_ns, e.mode, e.algo, bytes(e.digest), e.received, e.id, e.peer)


def entry_of(row: tuple[Any, ...]) -> Entry:
    """The Entry of a row read in the order of :data:`COLUMNS`."""
    name, size, mtime_ns, mode, algo, digest, received, id_, peer = row
    return Entry(
        name=name,
        size=size,
        mtime_ns=mtime_ns,
        mode=mode,
        algo=algo,
        digest=bytes(digest),
        received=received,
        id=id_,
        peer=peer or "",
    )


def prefix_end(prefix: str) -> str | None:
    """Smallest string greater than every string starting with ``prefix``
    (code point order, which is also SQLite's BINARY order on UTF-8), or None
    when no such bound exists.  A range query uses the name index; LIKE would
    need ``%`` and ``_`` escaped and would not."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop()) + 1
        if last == 0xD800:
            # Surrogates cannot be encoded as UTF-8, and nothing sorts between them in UTF-8 anyway.
            last = 0xE000
        if last <= 0x10FFFF:
            return "".join(chars) + chr(last)
    return None
