"""Renaming and removing stored files in the local backend: :func:`rename`,
:func:`delete` and :func:`delete_many`, behind the LocalStore methods of
those names.

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
the new one and drops the intent.  A crash between the rename and the
catalog leaves the intent, and startup reconciliation
(:mod:`zfile.store.recovery`) records the file under its new name (its
bytes re-hashed against the intent's digest) and forgets the old row, whose
file is gone; a crash before the rename leaves the old name as it was.  A
download already open keeps reading the inode it opened, under either name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from zfile.errors import ErrorCode, NoSpace, NotFound, ZfileError
from zfile.protocol.events import Entry
from zfile.protocol.names import check_name, quote_name
from zfile.store.catalog import Catalog
from zfile.store.fs import fsync_dir, store_error
from zfile.store.group_commit import Publisher
from zfile.store.layout import Layout, exists_error


def _replace(src: Path, dst: Path) -> None:
    os.makedirs(dst.parent, exist_ok=True)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


async def rename(
    layout: Layout, catalog: Catalog, publisher: Publisher, old: str, new: str, *, clobber: bool, max_name_bytes: int
) -> Entry:
    """Rename the stored file ``old`` to ``new`` (module docstring) and
    return its new entry: size, mtime, mode, digest, received and peer those
    of ``old``.  BadName for a bad name or a path the store cannot use (a
    symlink, a directory, a path leaving the root), ZfileError bad-request
    when the names are equal, NotFound when ``old`` is not stored, Exists
    when ``new`` is and ``clobber`` is off, StoreError or NoSpace when the
    disk fails."""
    layout.check_open()
    check_name(old, max_name_bytes)
    check_name(new, max_name_bytes)
    if old == new:
        raise ZfileError(f"{quote_name(old)} and its new name are the same", code=ErrorCode.BAD_REQUEST)
    async with publisher.lock:
        entry = await catalog.get(old)
        if entry is None:
            raise NotFound(f"{quote_name(old)} is not in the store")
        if not clobber and await catalog.get(new) is not None:
            raise exists_error(new)
        src = await layout.resolve(old, False)
        dst = await layout.resolve(new, True)
        moved = dataclasses.replace(entry, name=new)
        intent = f"mv-{uuid.uuid4().hex}"
        batch = await catalog.add_intents([(intent, moved)])
        try:
            await asyncio.to_thread(_replace, src, dst)
        except OSError as exc:
            await catalog.drop_intents([intent])
            if isinstance(exc, FileNotFoundError) and not src.exists():
                raise NotFound(f"{quote_name(old)} is in the catalog but missing from the disk") from exc
            raise store_error(exc, new, "rename to") from exc
        await catalog.rename(old, moved, intent, batch)
    return moved


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


def _paths(layout: Layout, names: list[str]) -> dict[str, Path | ZfileError]:
    """Each name's checked path, or the error checking it raised (BadName,
    StoreError for a tree that cannot be inspected)."""
    out: dict[str, Path | ZfileError] = {}
    for name in names:
        try:
            out[name] = layout.check_path(name, False)
        except ZfileError as exc:
            out[name] = exc
        except OSError as exc:
            out[name] = store_error(exc, name, "inspect the path of")
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


__all__ = ["delete", "delete_many", "rename"]
