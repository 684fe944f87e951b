"""Skipping files the other side already has, as rsync does.

Before a tree moves, each file is compared with what the destination holds
under the same name, and a file found unchanged is not sent again:

- :attr:`Compare.QUICK` (the default, rsync's "quick check"): the same size
  in bytes and the same mtime in nanoseconds (zfile keeps mtime to the
  nanosecond on both ends);
- :attr:`Compare.CHECKSUM` (rsync's ``-c``): the same size and the same
  whole-file BLAKE3 digest.  The daemon answers from its catalog and never
  re-reads a file to compare; this side hashes its own copy;
- :attr:`Compare.NONE` (rsync's ``-I``): everything is sent.

The daemon's side comes from LIST pages (one request per top-level
directory of the tree, or per file named on its own), the local side from
the ``stat(2)`` the plan's walk made, and hashing only for files whose size
already matches, several at once in worker threads (BLAKE3 and the reads
release the GIL).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Container, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path

from zfile.client.client import Client
from zfile.fileio.hashing import whole_file_digest
from zfile.protocol.codec import MAX_LIST_PAGE
from zfile.protocol.digest import DEFAULT_ALGO
from zfile.protocol.events import Entry

#: Files named on their own above which one listing of the whole store is
#: cheaper than one listing per name.
_BARE_NAMES_MAX = 64
#: Under -c, files of this many bytes or more are hashed in up to
#: _HASH_THREADS worker threads; smaller ones in the calling thread.  The
#: reads and BLAKE3 release the GIL, but for files of 4 to 64 KiB the
#: threads spent more on passing the GIL than they saved (a tree of 10,000
#: files of 4 KiB: 66 ms in one thread, 110 ms in four).
_THREADED_SIZE = 256 << 10
_HASH_THREADS = 4
#: Bytes of small files -c hashes before the daemon's listing has come
#: (:func:`local_digests`): 10,000 files of 4 KiB.
_AHEAD_BYTES = 40 << 20


class Compare(Enum):
    """How a file is judged unchanged (module docstring)."""

    QUICK = "quick"
    CHECKSUM = "checksum"
    NONE = "none"


def listing_prefixes(names: Iterable[str]) -> list[str]:
    """The LIST prefixes whose entries hold every one of ``names`` (stored
    names; a directory's may end in ``/``): the first directory of each
    name below one, each top-level name on its own, or ``""`` (the whole
    store) in place of more than :data:`_BARE_NAMES_MAX` top-level names;
    sorted, each once."""
    wanted = set(names)
    prefixes = {n.split("/", 1)[0] + "/" for n in wanted if "/" in n}
    bare = [n for n in wanted if "/" not in n]
    if len(bare) > _BARE_NAMES_MAX or "" in bare:
        return [""]
    prefixes.update(bare)
    return sorted(prefixes)


async def remote_listing(
    client: Client, prefixes: Sequence[str], wanted: Container[str] | None = None
) -> dict[str, Entry]:
    """The entries the daemon holds under ``prefixes`` (LIST prefixes, such
    as :func:`listing_prefixes` gives), by name, in pages of
    :data:`~zfile.protocol.codec.MAX_LIST_PAGE` (the protocol's most, so
    that a tree of 10,000 files costs one round trip); with ``wanted``, only those whose names it holds (a
    listing of the whole store keeps no more than that).  Raises the
    client's errors (:class:`~zfile.errors.RemoteError`,
    :class:`~zfile.errors.TransportError`)."""
    found: dict[str, Entry] = {}
    for prefix in prefixes:
        async for entry in client.list(prefix, page_size=MAX_LIST_PAGE):
            if wanted is None or entry.name in wanted:
                found[entry.name] = entry
    return found


async def remote_entries(client: Client, names: Sequence[str]) -> dict[str, Entry]:
    """The daemon's entries for those of ``names`` it holds, by name.

    Raises the client's errors (:class:`~zfile.errors.RemoteError`,
    :class:`~zfile.errors.TransportError`)."""
    wanted = set(names)
    return await remote_listing(client, listing_prefixes(wanted), wanted)


def same(local: Path, entry: Entry | None, compare: Compare) -> bool:
    """True when the file at ``local`` matches ``entry`` under ``compare``;
    False when there is no entry, the file cannot be read, or it differs.
    Blocking (stat, and for CHECKSUM a read of the file): run it in a worker
    thread."""
    if entry is None or compare is Compare.NONE:
        return False
    if compare is Compare.CHECKSUM:
        if entry.algo != DEFAULT_ALGO:
            return False
        try:
            return whole_file_digest(local, entry.size, entry.algo) == entry.digest
        except OSError:
            return False
    try:
        st = local.stat()
    except OSError:
        return False
    return st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns


def _unchanged(pairs: Sequence[tuple[Path, Entry | None]], compare: Compare) -> list[bool]:
    return [same(local, entry, compare) for local, entry in pairs]


def local_digests(files: Sequence[tuple[Path, str, int]]) -> dict[str, bytes | None]:
    """The digests (:data:`~zfile.protocol.digest.DEFAULT_ALGO`) of an
    upload plan's files under :data:`_THREADED_SIZE` bytes, by stored name,
    at most :data:`_AHEAD_BYTES` in all, in the plan's order; None for a
    file that cannot be read or no longer has its planned size.

    For ``-c``: made while the daemon's listing is on its way, as rsync's
    sender checksums its files while it builds its list; whatever the
    listing then shows to be new was hashed for nothing, which the limit
    keeps to about 20 ms.  Blocking: run it in a worker thread."""
    out: dict[str, bytes | None] = {}
    budget = _AHEAD_BYTES
    for path, name, size in files:
        if size >= _THREADED_SIZE:
            continue
        budget -= size
        if budget < 0:
            break
        try:
            out[name] = whole_file_digest(path, size)
        except OSError:
            out[name] = None
    return out


def unchanged_files(
    files: Sequence[tuple[Path, str, int]],
    entries: Mapping[str, Entry],
    compare: Compare,
    mtime_ns: Mapping[str, int] | None = None,
    digests: Mapping[str, bytes | None] | None = None,
) -> list[bool]:
    """For each ``(local path, stored name, size in bytes)`` of an upload
    plan, whether ``entries`` (the daemon's, by stored name) holds that file
    unchanged, in the plan's order.

    The quick check takes the size and ``mtime_ns`` (nanoseconds, by stored
    name; a plan's :attr:`~zfile.client.plan.UploadPlan.mtime_ns`) the plan
    recorded, and stats only the files missing there.  CHECKSUM hashes only
    the files whose planned size matches their entry's, those of
    :data:`_THREADED_SIZE` bytes or more in up to :data:`_HASH_THREADS`
    worker threads, or takes its digest from ``digests`` (by stored name,
    :func:`local_digests`) when that holds it; a file that cannot be read,
    or that changed size since, is not unchanged.  Blocking: run it in a worker
    thread."""
    if compare is Compare.NONE:
        return [False] * len(files)
    known = mtime_ns or {}
    hashed = digests or {}
    out = [False] * len(files)
    check: list[tuple[int, Path, Entry]] = []
    for i, (path, name, size) in enumerate(files):
        entry = entries.get(name)
        if entry is None or entry.size != size:
            continue
        if compare is Compare.QUICK:
            mtime = known.get(name)
            out[i] = same(path, entry, compare) if mtime is None else mtime == entry.mtime_ns
        elif name in hashed and entry.algo == DEFAULT_ALGO:
            out[i] = hashed[name] == entry.digest
        else:
            check.append((i, path, entry))

    def verdict(c: tuple[int, Path, Entry]) -> tuple[int, bool]:
        return c[0], same(c[1], c[2], compare)

    inline = [c for c in check if c[2].size < _THREADED_SIZE]
    pooled = [c for c in check if c[2].size >= _THREADED_SIZE]
    if len(pooled) < 2:  # a pool gains nothing for one file
        inline, pooled = check, []
    verdicts = list(map(verdict, inline))
    if pooled:
        with ThreadPoolExecutor(min(_HASH_THREADS, os.cpu_count() or 1, len(pooled))) as pool:
            verdicts += pool.map(verdict, pooled)
    for i, unchanged in verdicts:
        out[i] = unchanged
    return out


async def unchanged_uploads(client: Client, plan: Sequence[tuple[Path, str, int]], compare: Compare) -> list[bool]:
    """For each ``(local path, stored name, size)`` of an upload plan, whether
    the daemon already holds that file unchanged (in the plan's order)."""
    if compare is Compare.NONE or not plan:
        return [False] * len(plan)
    entries = await remote_entries(client, [name for _, name, _ in plan])
    return await asyncio.to_thread(unchanged_files, plan, entries, compare)


async def unchanged_downloads(plan: Sequence[tuple[Entry, Path]], compare: Compare) -> list[bool]:
    """For each ``(entry, local path)`` of a download plan, whether the local
    file already is that entry's file (in the plan's order)."""
    if compare is Compare.NONE or not plan:
        return [False] * len(plan)
    return await asyncio.to_thread(_unchanged, [(dest, entry) for entry, dest in plan], compare)


__all__ = [
    "Compare",
    "listing_prefixes",
    "local_digests",
    "remote_entries",
    "remote_listing",
    "same",
    "unchanged_downloads",
    "unchanged_files",
    "unchanged_uploads",
]
