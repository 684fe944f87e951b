"""The store's catalog: one SQLite row per committed file.

The database lives at ``<root>/.zfile/catalog.db`` in WAL mode with
``synchronous=FULL``, so a row the store has reported committed survives a
power cut.  Two more tables hold commit intents: the entry of a file about to
be renamed into place, keyed by its transfer id (``intents``, one row a
file; ``intent_batches``, one row a group-commit batch), written before the
rename and removed in the transaction that records the file (:mod:`zfile.recovery`
finishes what a crash left in between).  sqlite3 blocks, so every call runs on one dedicated thread: a
single thread serialises writers without SQLite busy errors and keeps the
connection on the thread that made it.

A catalog on a full disk cannot even be opened for writing (the WAL and its
index need room), so :meth:`Catalog.open` then opens it read-only and sets
:attr:`Catalog.read_only`: the store still serves downloads and listings,
and every write raises :class:`~zfile.errors.NoSpace` until
:meth:`Catalog.try_writable` succeeds once space is freed.  SQLite's own
wording is logged, never put in an error a client would see.  A write that
records what is already on the disk (a file installed, renamed, removed)
may spend the catalog's reserve (:mod:`zfile.store.reserve`) when the disk
is full, so that the catalog still says what the disk holds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgpack

from zfile.errors import NoSpace, StoreError
from zfile.protocol.events import Entry
from zfile.protocol.names import quote_name
from zfile.protocol.quickcheck import Held
from zfile.store import catalog_file
from zfile.store.catalog_rows import (
    COLUMNS,
    INSERT,
    entry_of,
    prefix_end,
    row_of,
)
from zfile.store.reserve import Reserve

T = TypeVar("T")

log = logging.getLogger("zfile.store")

# Free bytes under which a catalog that fails to open is taken to be on a full disk.
_FULL_BYTES = 1 << 20


class Catalog:
    """SQLite catalog of committed files at ``path``.

    Methods raise :class:`~zfile.errors.StoreError` (code ``internal``) when
    SQLite fails, and when the catalog is used before :meth:`open` or after
    :meth:`close`.  While writable it holds a reserve at ``catalog.reserve``
    beside ``path`` (None once it could not be allocated for a reason other
    than room: the catalog then runs without).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._reserve: Reserve | None = Reserve(self.path.with_suffix(".reserve"))
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        #: True while the catalog is open read-only because its disk is full.
        self.read_only = False
        #: False while its connection was opened read-only (it cannot write at all).
        self._can_write = False
        #: True once a write recording a change already on the disk failed:
        #: commit intents may be left to finish (the store's to clear).
        self.behind = False
        #: The files the open connection holds, for lost() and mend().
        self._files = catalog_file.CatalogFiles(self.path)
        #: Why the catalog could not be opened again by mend(), for sides_lost().
        self._broken: str | None = None

    async def _run(self, doing: str, fn: Callable[..., T], *args: Any, quiet: bool = False) -> T:
        if self._executor is None:
            raise StoreError(f"the catalog {self.path} is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            if not quiet:
                log.error("catalog %s: could not %s: %s", self.path, doing, exc)
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                self._go_read_only(str(exc))
                raise NoSpace(f"the store's disk is full: its catalog could not {doing}") from exc
            raise StoreError(f"the catalog {self.path} could not {doing} (the daemon's log has why)") from exc

    async def _write(
        self, doing: str, fn: Callable[..., T], *args: Any, settles: bool = True, frees: bool = False
    ) -> T:
        """Run the write ``fn``; ``settles``: it records a change already
        made on the disk, and may spend the reserve; ``frees``: it records
        a removal, tried even while read-only (:meth:`deletable`)."""
        if self.read_only and not (frees and self._can_write):
            raise NoSpace(f"the store's disk is full: its catalog cannot be written, so it could not {doing}")
        if not settles or self._reserve is None:
            return await self._run(doing, fn, *args)
        spent: list[bool] = []
        try:
            return await self._run(doing, self._spending_reserve, spent, doing, fn, *args)
        except StoreError:
            self.behind = True
            raise
        finally:
            if spent:  # no room is left for another write of the kind
                self._go_read_only("its reserve was spent")

    def _spending_reserve(self, spent: list[bool], doing: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            # Every write below is one statement or one transaction rolled back on failure: safe to run again.
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL or not self._reserve.release():
                raise
        spent.append(True)
        log.warning("catalog %s: the disk is full; freed its reserve to %s", self.path, doing)
        return fn(*args)

    def _hold_reserve(self) -> bool:
        """Blocking.  True when the reserve is held, or the catalog runs
        without one; False when the disk has no room for it."""
        if self._reserve is None:
            return True
        try:
            return self._reserve.hold()
        except OSError as exc:
            log.warning(
                "catalog %s: runs without a reserve, %s could not be allocated (%s): a disk that fills "
                "between a change and its row leaves the catalog behind the disk until the next start",
                self.path,
                self._reserve.path,
                exc.strerror or exc,
            )
            self._reserve = None
            return True

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the catalog {self.path} is not open")
        return self._conn

    def _connect(self) -> None:
        self._conn = catalog_file.connect(self.path)
        self._can_write = True
        self._files.record(writable=True)

    def _connect_read_only(self) -> None:
        self._conn = catalog_file.connect_read_only(self.path)
        self._can_write = False
        self._files.record(writable=False)

    def lost(self) -> str | None:
        """Why the file at :attr:`path` is no longer the open catalog, or None
        (:meth:`zfile.store.catalog_file.CatalogFiles.lost`)."""
        return self._files.lost()

    def sides_lost(self) -> str | None:
        """Why the catalog cannot go on, or None: a file SQLite keeps beside it
        was replaced while open, or :meth:`mend` could not open it again."""
        return self._broken or self._files.replaced()

    def mend(self) -> str | None:
        """Open the catalog again when SQLite's write-ahead log or its index
        was deleted while open, and say so; else None.  SQLite goes on
        writing a deleted log, which no start reads: a crash before its next
        checkpoint would lose every row in it.  Closing the connection (on
        the catalog's thread, between two calls) checkpoints it into the
        catalog; connecting again makes new files.  Blocking: call it from
        another thread; a failure is kept for :meth:`sides_lost`."""
        executor = self._executor
        if executor is None or not self._files.missing():
            return None
        try:
            gone = executor.submit(self._reopen_for_sides).result()
        except RuntimeError:  # the catalog is closing, and its close checkpoints the log
            return None
        except (sqlite3.Error, OSError) as exc:
            log.error("catalog %s: could not be opened again: %s", self.path, exc)
            self._broken = f"the catalog {self.path} could not be opened again after its log went: {exc}"
            return None
        return self._files.deleted(gone) if gone else None

    def _reopen_for_sides(self) -> list[str]:
        gone = self._files.missing() if self._conn is not None and self._can_write else []
        if gone:
            old, self._conn = self._conn, None
            self._files.forget()
            old.close()
            self._connect()
        return gone

    def _go_read_only(self, why: str) -> None:
        if self.read_only:
            return
        self.read_only = True
        log.error(
            "the store's disk is full (%s): its catalog %s is read-only; serving downloads and listings, "
            "refusing uploads with no-space until space is freed",
            why,
            self.path,
        )

    def _probe(self) -> None:
        catalog_file.probe_write(self._db())

    def _disk_full(self) -> bool:
        try:
            fs = os.statvfs(self.path.parent)
        except OSError:
            return False
        return fs.f_bavail * fs.f_frsize < _FULL_BYTES + (self._reserve.size if self._reserve else 0)

    async def open(self) -> None:
        """Create or open the database; a no-op when already open.

        On a full disk (under 1 MiB free) a catalog that cannot be opened for
        writing is opened read-only instead, and :attr:`read_only` is set;
        so it is when the disk has no room for the reserve.
        Raises StoreError when the file cannot be created or opened, or WAL
        mode cannot be enabled.
        """
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zfile-catalog")
        try:
            try:
                await self._run("be opened", self._connect, quiet=True)
            except StoreError as exc:
                if not await asyncio.to_thread(self._disk_full) or not self.path.exists():
                    log.error("catalog %s: could not be opened: %s", self.path, exc.__cause__)
                    raise
                await self._run("be opened read-only", self._connect_read_only)
                self._go_read_only(str(exc.__cause__))
            else:
                try:
                    await self._run("be written", self._probe, quiet=True)
                except StoreError as exc:
                    if not await asyncio.to_thread(self._disk_full):
                        log.error("catalog %s: could not be written: %s", self.path, exc.__cause__)
                        raise
                    self._go_read_only(str(exc.__cause__))
                else:
                    if not await self._run("hold its reserve", self._hold_reserve):
                        self._go_read_only(self._no_room())
        except OSError as exc:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise StoreError(f"the catalog {self.path} could not be created: {exc.strerror or exc}") from exc
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def try_writable(self) -> bool:
        """Reopen a read-only catalog for writing, now that its disk may have
        room again; True when it is writable (then :attr:`read_only` is
        False).  On failure the catalog stays read-only and serves on."""
        if not self.read_only:
            return True
        if await asyncio.to_thread(self._disk_full):
            return False

        def reopen() -> bool:
            old, self._conn = self._conn, None
            if old is not None:
                old.close()
            try:
                self._connect()
            except BaseException:
                self._connect_read_only()
                raise
            return self._hold_reserve()

        try:
            if not await self._run("be reopened for writing", reopen, quiet=True):
                log.info("catalog %s: stays read-only: %s", self.path, self._no_room())
                return False
        except StoreError:
            return False
        self.read_only = False
        return True

    async def deletable(self) -> bool:
        """Whether a removal can be recorded: the catalog is writable or
        becomes so (:meth:`try_writable`), or it turned read-only when a
        write met a full disk and its connection can still write (the
        removed files' blocks may make room for the rows' deletion).  A
        removal asks before it unlinks anything, so that one the catalog
        could not record removes nothing."""
        return not self.read_only or await self.try_writable() or self._can_write

    def _no_room(self) -> str:
        size = self._reserve.size if self._reserve else 0
        return f"no room for its reserve of {size} bytes"

    async def close(self) -> None:
        """Close the database and stop its thread; a no-op when not open."""
        if self._executor is None:
            return

        def close() -> None:
            self._files.forget()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await self._run("be closed", close)
        finally:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def put(self, entry: Entry) -> None:
        """Insert ``entry``, atomically replacing any row with the same name."""

        def put() -> None:
            self._db().execute(INSERT, row_of(entry))

        await self._write(f"record {quote_name(entry.name)}", put)

    async def put_many(self, entries: Sequence[Entry], done: Sequence[str] = (), done_batch: int | None = None) -> None:
        """Insert ``entries`` in one transaction: all rows or none, each
        atomically replacing any row with the same name (a later entry of the
        same name wins), and remove the commit intents of the transfers
        ``done`` and the batch of intents ``done_batch`` (from
        :meth:`add_intents`) in the same transaction.  One journal flush for
        the lot is what lets the store commit many small files per second
        (group commit)."""

        def put_many() -> None:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(INSERT, [row_of(e) for e in entries])
                db.executemany("DELETE FROM intents WHERE transfer = ?", [(t,) for t in done])
                if done_batch is not None:
                    db.execute("DELETE FROM intent_batches WHERE batch = ?", (done_batch,))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        if entries or done or done_batch is not None:
            await self._write(f"record {len(entries)} entries", put_many)

    async def add_intents(self, intents: Sequence[tuple[str, Entry]]) -> int | None:
        """Record the commit intents ``(transfer, entry)`` of files about to
        be renamed into place, as one row for the lot (committed, durable,
        before this returns); return that batch's key for :meth:`put_many`,
        or None when there were none."""

        def add() -> int | None:
            packed = msgpack.packb([(t, *row_of(e)) for t, e in intents], use_bin_type=True)
            return self._db().execute("INSERT INTO intent_batches (intents) VALUES (?)", (packed,)).lastrowid

        if not intents:
            return None
        # Nothing is on the disk yet: an intent that cannot be written stops the batch, and the reserve is kept.
        return await self._write(f"record {len(intents)} commit intents", add, settles=False)

    async def intents(self) -> list[tuple[str, Entry]]:
        """Every recorded commit intent as ``(transfer, entry)``, batched or not."""

        def intents() -> list[tuple[str, Entry]]:
            db = self._db()
            found = [(row[0], entry_of(row[1:])) for row in db.execute(f"SELECT transfer, {COLUMNS} FROM intents")]
            for (packed,) in db.execute("SELECT intents FROM intent_batches ORDER BY batch"):
                found.extend((item[0], entry_of(tuple(item[1:]))) for item in msgpack.unpackb(packed, raw=False))
            return sorted(found, key=lambda intent: intent[0])

        return await self._run("list commit intents", intents)

    async def drop_intents(self, transfers: Sequence[str]) -> None:
        """Remove the commit intents of ``transfers``, and every batch of
        intents whose transfers are all among them."""
        gone = set(transfers)

        def drop() -> None:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM intents WHERE transfer = ?", [(t,) for t in transfers])
                for batch, packed in db.execute("SELECT batch, intents FROM intent_batches").fetchall():
                    if all(item[0] in gone for item in msgpack.unpackb(packed, raw=False)):
                        db.execute("DELETE FROM intent_batches WHERE batch = ?", (batch,))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        if transfers:
            await self._write("drop commit intents", drop)

    async def get(self, name: str) -> Entry | None:
        """Return the entry named ``name``, or None when there is none."""

        def get() -> Entry | None:
            row = self._db().execute(f"SELECT {COLUMNS} FROM files WHERE name = ?", (name,)).fetchone()
            return None if row is None else entry_of(row)

        return await self._run(f"look up {quote_name(name)}", get)

    async def get_many(self, names: Sequence[str]) -> dict[str, Entry]:
        """The entries of those of ``names`` the catalog holds, by name, in one
        worker-thread hop (a batched download's lookups)."""
        rows = await self._run(f"look up {len(names)} names", self._rows_of, COLUMNS, names)
        return {row[0]: entry_of(row) for row in rows}

    async def held(self, names: Sequence[str]) -> dict[str, Held]:
        """(size, mtime_ns, algo, digest) of those of ``names`` the catalog
        holds, by name, in one worker-thread hop and no Entry built (a
        CHECK of 10,000 names costs about 20 ms)."""
        rows = await self._run(f"check {len(names)} names", self._rows_of, "name, size, mtime_ns, algo, digest", names)
        return {name: (size, mtime, algo, bytes(digest)) for name, size, mtime, algo, digest in rows}

    def _rows_of(self, columns: str, names: Sequence[str]) -> list[tuple[Any, ...]]:
        """The rows (``columns``, the name first) of those of ``names`` the
        catalog holds.  Blocking: the worker thread's."""
        db = self._db()
        unique = list(dict.fromkeys(names))
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(unique), 500):  # under SQLite's oldest limit of 999 parameters
            part = unique[start : start + 500]
            rows += db.execute(f"SELECT {columns} FROM files WHERE name IN ({', '.join('?' * len(part))})", part)
        return rows

    async def listed(self, names: Sequence[str]) -> set[str]:
        """Which of ``names`` have an entry: one lookup for a whole batch."""
        rows = await self._run(f"look up {len(names)} names", self._rows_of, "name", names) if names else []
        return {r[0] for r in rows}

    async def delete(self, name: str) -> None:
        """Remove the entry named ``name``; a no-op when there is none."""
        await self._write(
            f"delete {quote_name(name)}",
            lambda: self._db().execute("DELETE FROM files WHERE name = ?", (name,)),
            frees=True,
        )

    async def delete_many(self, names: Sequence[str]) -> None:
        """Remove the entries ``names`` in one transaction (one journal
        flush for the lot); names without an entry are no error."""

        def delete_many() -> None:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM files WHERE name = ?", [(n,) for n in names])
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        if names:
            await self._write(f"delete {len(names)} entries", delete_many, frees=True)

    async def rename(self, moves: Sequence[tuple[str, Entry]], done_batch: int | None) -> None:
        """In one transaction, for each ``(old, entry)``: remove the row
        ``old`` and insert ``entry`` (replacing any row of its name); then
        remove the batch of commit intents ``done_batch`` (from
        :meth:`add_intents`): the renames are recorded whole or not at all."""

        def rename() -> None:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                for old, entry in moves:
                    db.execute("DELETE FROM files WHERE name = ?", (old,))
                    db.execute(INSERT, row_of(entry))
                if done_batch is not None:
                    db.execute("DELETE FROM intent_batches WHERE batch = ?", (done_batch,))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        await self._write(f"rename {len(moves)} file(s)", rename)

    async def list(self, prefix: str, after: str, limit: int) -> list[Entry]:
        """Return up to ``limit`` entries whose names start with ``prefix``
        and sort after ``after`` ("" for the first page), ordered by name.
        ``limit`` < 1 returns an empty list."""
        if limit < 1:
            return []
        clauses, params = ["name >= ?", "name > ?"], [prefix, after]
        end = prefix_end(prefix)
        if end is not None:
            clauses.append("name < ?")
            params.append(end)
        sql = f"SELECT {COLUMNS} FROM files WHERE {' AND '.join(clauses)} ORDER BY name LIMIT ?"

        def list_() -> list[Entry]:
            return [entry_of(row) for row in self._db().execute(sql, (*params, limit))]

        return await self._run(f"list names starting with {quote_name(prefix)}", list_)

    async def all_entries(self) -> list[Entry]:
        """Return every entry, ordered by name."""

        def all_() -> list[Entry]:
            return [entry_of(row) for row in self._db().execute(f"SELECT {COLUMNS} FROM files ORDER BY name")]

        return await self._run("list all entries", all_)
