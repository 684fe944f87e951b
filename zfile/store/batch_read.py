"""Reading many small stored files whole, for a batched download (GET-MANY).

:meth:`LocalStore.open_download` costs a small file four worker-thread hops
(catalog lookup, path check, open, close) and a read.  :func:`read_wholes`
serves a whole batch in two: one catalog query for every name, then one hop
that checks each path, opens it (never following a symbolic link at the
name, never blocking on a FIFO planted there), reads it and closes it.
Both run under the group commit's lock, as :meth:`open_download` does, so a
delete or a replace cannot pair an entry with another file.  Sizes are bytes.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Sequence

from zfile.errors import BadName, NotFound, StoreError, TooLarge, ZfileError
from zfile.protocol.events import Entry
from zfile.protocol.names import check_name, quote_name
from zfile.store.fs import store_error
from zfile.store.layout import Layout
from zfile.store.local import LocalStore

Whole = tuple[Entry, bytes]


async def read_wholes(store: LocalStore, names: Sequence[str], most: int) -> list[Whole | ZfileError]:
    """Each of ``names`` as (entry, its bytes), or the error a download of it
    would meet, in order: BadName, NotFound, StoreError when the file on
    disk is shorter or longer than its entry (it changed) or cannot be read,
    and TooLarge for each file that would take the files read so far past
    ``most`` bytes.  StoreError when the store is closed."""
    store.layout.check_open()
    results: list[Whole | ZfileError | None] = [None] * len(names)
    wanted: list[int] = []
    for k, name in enumerate(names):
        try:
            check_name(name, store.max_name_bytes)
            wanted.append(k)
        except BadName as exc:
            results[k] = exc
    async with store.publisher.lock:
        entries = await store.catalog.get_many([names[k] for k in wanted]) if wanted else {}
        chosen: list[tuple[int, Entry]] = []
        budget = most
        for k in wanted:
            entry = entries.get(names[k])
            if entry is None:
                results[k] = NotFound(f"{quote_name(names[k])} is not in the store")
            elif entry.size > budget:
                results[k] = TooLarge(
                    f"{quote_name(entry.name)} ({entry.size} bytes) does not fit in this reply's {most} bytes; "
                    "get it on its own"
                )
            else:
                budget -= entry.size
                chosen.append((k, entry))
        if chosen:
            read = await asyncio.to_thread(_read_all, store.layout, [e for _, e in chosen])
            for (k, _), result in zip(chosen, read, strict=True):
                results[k] = result
    return results  # type: ignore[return-value]


def _read_all(layout: Layout, entries: Sequence[Entry]) -> list[Whole | ZfileError]:
    out: list[Whole | ZfileError] = []
    for entry in entries:
        try:
            out.append((entry, _read_one(layout, entry)))
        except ZfileError as exc:
            out.append(exc)
        except OSError as exc:
            out.append(store_error(exc, entry.name, "read"))
    return out


def _read_one(layout: Layout, entry: Entry) -> bytes:
    q = quote_name(entry.name)
    path = layout.check_path(entry.name, False)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise BadName(f"{q} is a symbolic link in the store") from exc
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
            raise NotFound(f"{q} is in the catalog but missing from the disk") from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotFound(f"{q} is in the catalog but is not a regular file on the disk")
        # One byte more than the entry says: a file that grew shows as changed too.
        data = os.read(fd, entry.size + 1)
        while len(data) < entry.size + 1:
            more = os.read(fd, entry.size + 1 - len(data))
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    if len(data) > entry.size:
        raise StoreError(f"{q} changed on disk: it is longer than the {entry.size} bytes of its entry")
    if len(data) < entry.size:
        raise StoreError(f"{q} changed on disk: {len(data)} bytes where its entry says {entry.size}")
    return data


__all__ = ["Whole", "read_wholes"]
