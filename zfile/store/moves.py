"""Renaming and removing stored files in the local backend:
:class:`Renames`, :func:`delete` and :func:`delete_many`, behind the
LocalStore methods ``rename``, ``delete`` and ``delete_many``.

Removing many files at once costs one fsync per directory and one catalog
transaction for the lot, not one of each per file: the files are unlinked,
their directories fsynced (so that a crash cannot bring back a file whose
row is gone), then their rows deleted in one transaction, all under the
group commit's lock.  A crash before the rows go leaves rows without files,
which the next open forgets.

The file and its catalog row move in one step for readers: under the group
commit's lock (so no commit or download interleaves), a commit intent for
the new name is recorded, the file is renamed with ``os.replace`` and both
directories fsynced, then one catalog transaction drops the old row, writes
the new one and drops the intent; renames asked together share the intent
row, the fsyncs and the transaction (:class:`Renames`).  A crash between the rename and the
catalog leaves the intent, and startup reconciliation
(:mod:`zfile.store.recovery`) records the file under its new name (its
bytes re-hashed against the intent's digest) and forgets the old row, whose
file is gone; a crash before the rename leaves the old name as it was.  A
download already open keeps reading the inode it opened, under either name.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from zfile.errors import ErrorCode, NoSpace, NotFound, StoreError, ZfileError
from zfile.protocol.events import Entry
from zfile.protocol.names import check_name, quote_name
from zfile.store.catalog import Catalog
from zfile.store.fs import fsync_dir, store_error
from zfile.store.group_commit import Publisher
from zfile.store.layout import Layout, exists_error

#: Most renames committed together (one intent row, one catalog transaction).
_GROUP = 256


def _replace_all(pairs: Sequence[tuple[Path, Path]]) -> list[OSError | None]:
    """``os.replace`` each ``(src, dst)`` (making ``dst``'s directory), each
    one's error or None, then fsync every directory a rename touched, once;
    an fsync's OSError is raised (what it covers may not be durable)."""
    errors: list[OSError | None] = []
    touched: dict[Path, None] = {}
    for src, dst in pairs:
        try:
            os.makedirs(dst.parent, exist_ok=True)
            os.replace(src, dst)
        except OSError as exc:
            errors.append(exc)
            continue
        errors.append(None)
        touched[dst.parent] = None
        touched[src.parent] = None
    for directory in touched:
        fsync_dir(directory)
    return errors


@dataclasses.dataclass
class _Ask:
    old: str
    new: str
    clobber: bool
    done: asyncio.Future[Entry]


class Renames:
    """The renames of one local store (module docstring), committed in
    groups: those asked while one group commits go together in the next,
    so that a tree moved file by file (many MOVEs in flight) pays for its
    intents, directory fsyncs and catalog transaction once a group, not
    once a file.  Each rename is still one step for readers, all of a
    group's under the group commit's lock; a group holds no name twice, so
    that ``a -> b`` then ``b -> c`` happen in their order."""

    def __init__(self, layout: Layout, catalog: Catalog, publisher: Publisher, *, max_name_bytes: int) -> None:
        self.layout = layout
        self.catalog = catalog
        self.publisher = publisher
        self.max_name_bytes = max_name_bytes
        self._asks: collections.deque[_Ask] = collections.deque()
        self._drainer: asyncio.Task[None] | None = None

    async def rename(self, old: str, new: str, *, clobber: bool) -> Entry:
        """Rename the stored file ``old`` to ``new`` and return its new
        entry: size, mtime, mode, digest, received and peer those of
        ``old``.  BadName for a bad name or a path the store cannot use (a
        symlink, a directory, a path leaving the root), ZfileError
        bad-request when the names are equal, NotFound when ``old`` is not
        stored, Exists when ``new`` is and ``clobber`` is off, StoreError or
        NoSpace when the disk fails.  A caller that stops waiting does not
        stop the rename once asked."""
        self.layout.check_open()
        check_name(old, self.max_name_bytes)
        check_name(new, self.max_name_bytes)
        if old == new:
            raise ZfileError(f"{quote_name(old)} and its new name are the same", code=ErrorCode.BAD_REQUEST)
        ask = _Ask(old, new, clobber, asyncio.get_running_loop().create_future())
        ask.done.add_done_callback(_retrieved)
        self._asks.append(ask)
        if self._drainer is None:
            self._drainer = asyncio.ensure_future(self._drain())
        return await asyncio.shield(ask.done)

    async def _drain(self) -> None:
        group: list[_Ask] = []
        try:
            while self._asks:
                group = self._take_group()
                try:
                    await self._commit(group)
                except Exception as exc:
                    for ask in group:
                        _settle(ask, exc)
        finally:
            # Cancelled (the loop shutting down): no caller is left waiting forever.
            self._drainer = None
            for ask in [*group, *self._asks]:
                _settle(ask, StoreError(f"the store stopped before {quote_name(ask.old)} was renamed"))
            self._asks.clear()

    def _take_group(self) -> list[_Ask]:
        group: list[_Ask] = []
        names: set[str] = set()
        while self._asks and len(group) < _GROUP:
            ask = self._asks[0]
            if ask.old in names or ask.new in names:
                break
            names.update((ask.old, ask.new))
            group.append(self._asks.popleft())
        return group

    async def _commit(self, group: list[_Ask]) -> None:
        catalog, layout = self.catalog, self.layout
        async with self.publisher.lock:
            held = await catalog.get_many([a.old for a in group])
            taken = await catalog.get_many([a.new for a in group if not a.clobber])
            asks: list[_Ask] = []
            for ask in group:
                if ask.old not in held:
                    _settle(ask, NotFound(f"{quote_name(ask.old)} is not in the store"))
                elif ask.new in taken:
                    _settle(ask, exists_error(ask.new))
                else:
                    asks.append(ask)
            # One worker-thread hop for the group's path checks, not two a file.
            paths = await asyncio.to_thread(_rename_paths, layout, asks)
            todo: list[tuple[_Ask, Path, Path, Entry, str]] = []
            for ask, checked in zip(asks, paths, strict=True):
                if isinstance(checked, ZfileError):
                    _settle(ask, checked)
                    continue
                moved = dataclasses.replace(held[ask.old], name=ask.new)
                todo.append((ask, *checked, moved, f"mv-{uuid.uuid4().hex}"))
            if not todo:
                return
            batch = await catalog.add_intents([(intent, moved) for *_, moved, intent in todo])
            try:
                errors = await asyncio.to_thread(_replace_all, [(src, dst) for _, src, dst, _, _ in todo])
            except OSError as exc:
                # Renamed, perhaps not durably: the intents stay for the next open to settle.
                raise store_error(exc, todo[0][0].new, "rename to") from exc
            done = []
            for (ask, src, _, moved, _), error in zip(todo, errors, strict=True):
                if error is None:
                    done.append((ask, moved))
                elif isinstance(error, FileNotFoundError) and not src.exists():
                    _settle(ask, NotFound(f"{quote_name(ask.old)} is in the catalog but missing from the disk"))
                else:
                    _settle(ask, store_error(error, ask.new, "rename to"))
            await catalog.rename([(ask.old, moved) for ask, moved in done], batch)
            for ask, moved in done:
                if not ask.done.done():
                    ask.done.set_result(moved)


def _settle(ask: _Ask, exc: BaseException) -> None:
    if not ask.done.done():
        ask.done.set_exception(exc)


def _retrieved(done: asyncio.Future[Entry]) -> None:
    # A caller that stopped waiting leaves its answer unread: not an error to log.
    if not done.cancelled():
        done.exception()


def no_room_to_remove() -> NoSpace:
    """The error of a removal refused before it unlinks anything, as its
    catalog cannot record it."""
    return NoSpace(
        "the store's disk is full and its catalog cannot record a removal, so nothing was removed: "
        "free space on the daemon's disk by other means, then try again"
    )


def _unlink_all(paths: list[Path]) -> list[OSError | None]:
    """Unlink each path (already gone is no error), then fsync each
    directory once; the error of each path, None when it went."""
    errors: list[OSError | None] = []
    for path in paths:
        try:
            path.unlink(missing_ok=True)
            errors.append(None)
        except OSError as exc:
            errors.append(exc)
    for directory in {p.parent for p, e in zip(paths, errors, strict=True) if e is None}:
        fsync_dir(directory)
    return errors


def _paths(layout: Layout, names: list[str], for_write: bool = False) -> dict[str, Path | ZfileError]:
    """Each name's checked path (``for_write``: one a file may be written
    to, its directories made), or the error checking it raised (BadName,
    StoreError for a tree that cannot be inspected)."""
    out: dict[str, Path | ZfileError] = {}
    for name in names:
        try:
            out[name] = layout.check_path(name, for_write)
        except ZfileError as exc:
            out[name] = exc
        except OSError as exc:
            out[name] = store_error(exc, name, "inspect the path of")
    return out


def _rename_paths(layout: Layout, asks: list[_Ask]) -> list[tuple[Path, Path] | ZfileError]:
    """Each rename's checked ``(source, destination)``, or its error."""
    sources = _paths(layout, [a.old for a in asks])
    targets = _paths(layout, [a.new for a in asks], for_write=True)
    out: list[tuple[Path, Path] | ZfileError] = []
    for ask in asks:
        src, dst = sources[ask.old], targets[ask.new]
        out.append(src if isinstance(src, ZfileError) else dst if isinstance(dst, ZfileError) else (src, dst))
    return out


def _unlink_durably(path: Path) -> None:
    """Unlink ``path`` (already gone is no error) and fsync its directory, so
    that a crash cannot bring back a file whose row is gone (it would block
    a no-clobber upload of the name while listed nowhere)."""
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


async def delete(layout: Layout, catalog: Catalog, publisher: Publisher, name: str, *, max_name_bytes: int) -> Entry:
    """Unlink ``name``'s file, then drop its catalog row, both under the
    group commit's lock (so no download pairs the row with a missing
    file) and return the entry.  A crash between the two leaves a row
    without a file, which the next open forgets.  BadName for a bad name
    or a path leaving the root, NotFound when there is no entry (a row
    whose file is already gone is dropped all the same), NoSpace before
    anything is unlinked when the catalog, its disk full, could not
    record the removal, StoreError when the file cannot be removed.
    """
    layout.check_open()
    check_name(name, max_name_bytes)
    async with publisher.lock:
        entry = await catalog.get(name)
        if entry is None:
            raise NotFound(f"{quote_name(name)} is not in the store")
        path = await layout.resolve(name, False)
        if not await catalog.deletable():
            raise no_room_to_remove()
        try:
            await asyncio.to_thread(_unlink_durably, path)
        except OSError as exc:
            raise store_error(exc, name, "delete") from exc
        await catalog.delete(name)
    return entry


async def delete_many(
    layout: Layout, catalog: Catalog, publisher: Publisher, names: Sequence[str], *, max_name_bytes: int
) -> list[Entry | ZfileError]:
    """Remove the stored files ``names`` (module docstring) and return, for
    each in order, the entry it had or the error Store.delete would have
    raised for it (BadName, NotFound, StoreError); one file's error never
    stops the others.  NoSpace (raised) before anything is unlinked when
    the catalog, its disk full, could not record a removal
    (:meth:`Catalog.deletable`).  StoreError (raised) when the directories
    cannot be fsynced or the catalog cannot be written: then nothing is
    reported removed, though files may be gone (their rows are forgotten at
    the next open)."""
    layout.check_open()
    results: list[Entry | ZfileError] = []
    async with publisher.lock:
        wanted: list[str] = []
        for name in names:
            try:
                check_name(name, max_name_bytes)
                wanted.append(name)
            except ZfileError as exc:
                results.append(exc)
                continue
            results.append(NotFound(f"{quote_name(name)} is not in the store"))  # until found below
        found = await catalog.get_many(wanted)
        # One worker-thread hop for every path check: a hop per file is what a large tree would wait on.
        paths = await asyncio.to_thread(_paths, layout, [n for n in names if n in found])
        todo: list[tuple[int, Entry, Path]] = []
        seen: set[str] = set()
        for k, name in enumerate(names):
            if name not in found or name in seen:
                continue  # refused above, not stored, or named twice (then not found the second time)
            seen.add(name)
            path = paths[name]
            if isinstance(path, ZfileError):
                results[k] = path
            else:
                results[k] = found[name]
                todo.append((k, found[name], path))
        if todo and not await catalog.deletable():
            raise no_room_to_remove()
        try:
            errors = await asyncio.to_thread(_unlink_all, [path for _, _, path in todo])
        except OSError as exc:
            raise store_error(exc, todo[0][1].name, "delete") from exc
        for (k, entry, _), error in zip(todo, errors, strict=True):
            if error is not None:
                results[k] = store_error(error, entry.name, "delete")
        await catalog.delete_many([entry.name for (k, entry, _) in todo if isinstance(results[k], Entry)])
    return results


__all__ = ["Renames", "delete", "delete_many"]
