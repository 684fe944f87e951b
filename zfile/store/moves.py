"""Renaming a stored file in the local backend: :func:`rename`, behind
:meth:`zfile.store.local.LocalStore.rename`.

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
from pathlib import Path

from zfile.errors import ErrorCode, NotFound, ZfileError
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
        await catalog.add_intents([(intent, moved)])
        try:
            await asyncio.to_thread(_replace, src, dst)
        except OSError as exc:
            await catalog.drop_intents([intent])
            if isinstance(exc, FileNotFoundError) and not src.exists():
                raise NotFound(f"{quote_name(old)} is in the catalog but missing from the disk") from exc
            raise store_error(exc, new, "rename to") from exc
        await catalog.rename(old, moved, intent)
    return moved


__all__ = ["rename"]
