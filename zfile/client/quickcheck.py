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

An upload asks the daemon with CHECK requests (:func:`unchanged_uploads`):
the client sends each file's name, size and the mtime its walk's
``stat(2)`` saw, and the daemon answers a verdict and a stored digest per
file, so that a tree sent again costs no listing on either side.  Under
``-c`` it asks by size and hashes small files while the answer is on its
way (in a worker thread, stopping at those the daemon does not hold at that
size), larger ones only once their size is known to match, several at once
in worker threads (BLAKE3 and the reads release the GIL).  Fan-out and
downloads compare against LIST pages (one request per top-level directory
of the tree, or per file named on its own).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Container, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path

from zfile.client.client import Client
from zfile.fileio.hashing import whole_file_digest
from zfile.protocol.codec import MAX_LIST_PAGE
from zfile.protocol.digest import DEFAULT_ALGO
from zfile.protocol.events import CHECK_SAME, Entry
from zfile.protocol.names import listing_prefixes

#: Under -c, files of this many bytes or more are hashed in up to
#: _HASH_THREADS worker threads; smaller ones in the calling thread.  The
#: reads and BLAKE3 release the GIL, but for files of 4 to 64 KiB the
#: threads spent more on passing the GIL than they saved (a tree of 10,000
#: files of 4 KiB: 66 ms in one thread, 110 ms in four).
_THREADED_SIZE = 256 << 10
_HASH_THREADS = 4


class Compare(Enum):
    """How a file is judged unchanged (module docstring)."""

    QUICK = "quick"
    CHECKSUM = "checksum"
    NONE = "none"


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


def same(local: str | os.PathLike[str], entry: Entry | None, compare: Compare) -> bool:
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
        st = os.stat(local)
    except OSError:
        return False
    return st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns


def _unchanged(pairs: Sequence[tuple[str | os.PathLike[str], Entry | None]], compare: Compare) -> list[bool]:
    return [same(local, entry, compare) for local, entry in pairs]


class _Hashes:
    """Digests of small files hashed ahead of the CHECK's answer, in a
    worker thread, so that under -c the hashing overlaps the daemon's
    lookup (a tree of 10,000 files of 4 KiB: ~60 ms of hashing beside a
    ~25 ms round trip).  Once :meth:`only` names the files the answer
    says are held at their size, the rest are not hashed; a digest that
    turns out unwanted costs one small read."""

    def __init__(self, files: Sequence[tuple[str | os.PathLike[str], str, int]]) -> None:
        self._files = files
        self._wanted: Container[int] | None = None
        #: Digest (None: another size now) or OSError, by index into files.
        self.done: dict[int, bytes | None | OSError] = {}

    def only(self, wanted: Container[int]) -> None:
        self._wanted = wanted

    def run(self) -> None:
        """Blocking: run it in a worker thread."""
        for i, (path, _, size) in enumerate(self._files):
            if size >= _THREADED_SIZE:
                continue
            wanted = self._wanted
            if wanted is not None and i not in wanted:
                continue
            try:
                self.done[i] = whole_file_digest(path, size)
            except OSError as exc:
                self.done[i] = exc


def _hashed_same(checks: Sequence[tuple[int, str | os.PathLike[str], int, bytes]]) -> list[tuple[int, bool]]:
    """For each ``(index, local path, size, stored digest)``, whether the
    file holds ``size`` bytes of that digest (DEFAULT_ALGO); those of
    :data:`_THREADED_SIZE` bytes or more in up to :data:`_HASH_THREADS`
    worker threads.  A file that cannot be read is not the same.  Blocking."""

    def verdict(c: tuple[int, str | os.PathLike[str], int, bytes]) -> tuple[int, bool]:
        try:
            return c[0], whole_file_digest(c[1], c[2]) == c[3]
        except OSError:
            return c[0], False

    inline = [c for c in checks if c[2] < _THREADED_SIZE]
    pooled = [c for c in checks if c[2] >= _THREADED_SIZE]
    if len(pooled) < 2:  # a pool gains nothing for one file
        inline, pooled = list(checks), []
    verdicts = list(map(verdict, inline))
    if pooled:
        with ThreadPoolExecutor(min(_HASH_THREADS, os.cpu_count() or 1, len(pooled))) as pool:
            verdicts += pool.map(verdict, pooled)
    return verdicts


def _stat_mtimes(
    files: Sequence[tuple[str | os.PathLike[str], str, int]], known: Mapping[str, int]
) -> tuple[list[int], list[int]]:
    """The indexes of ``files`` whose mtime is known or stat'ed, and those
    mtimes; a file that cannot be stat'ed is left out (not unchanged: its
    send says why it cannot be read)."""
    asked: list[int] = []
    mtimes: list[int] = []
    for i, (path, name, _) in enumerate(files):
        mtime = known.get(name)
        if mtime is None:
            try:
                mtime = os.stat(path).st_mtime_ns
            except OSError:
                continue
        asked.append(i)
        mtimes.append(mtime)
    return asked, mtimes


async def unchanged_uploads(
    client: Client,
    files: Sequence[tuple[str | os.PathLike[str], str, int]],
    compare: Compare,
    mtime_ns: Mapping[str, int] | None = None,
) -> list[tuple[bool, bytes | None]]:
    """For each ``(local path, stored name, size in bytes)`` of an upload
    plan, in order, whether the daemon already holds that file unchanged,
    and then its stored digest (None when not unchanged, or when the daemon
    keeps it under another algorithm), from one CHECK of the whole plan
    (:meth:`Client.check <zfile.client.ops.FileOps.check>`).

    QUICK sends the size and ``mtime_ns`` (nanoseconds, by stored name; a
    plan's :attr:`~zfile.client.plan.UploadPlan.mtime_ns`; a file missing
    there is stat'ed, and one that cannot be is sent).  CHECKSUM asks by
    size alone and compares the digests the answer carries with the local
    files'; small files are hashed while the CHECK is in flight (a file not
    held costs its read), others only when the daemon holds them at that
    size.  Raises the client's errors (RemoteError, TransportError)."""
    out: list[tuple[bool, bytes | None]] = [(False, None)] * len(files)
    if compare is Compare.NONE or not files:
        return out
    if compare is Compare.QUICK:
        known = mtime_ns or {}
        asked: list[int] = list(range(len(files)))
        try:  # the plan's walk recorded every mtime: no stat
            mtimes = [known[name] for _, name, _ in files]
        except KeyError:
            asked, mtimes = _stat_mtimes(files, known)
        verdicts = await client.check([files[i][1] for i in asked], [files[i][2] for i in asked], mtimes)
        for i, (verdict, digest) in zip(asked, verdicts, strict=True):
            out[i] = (verdict == CHECK_SAME, digest)
        return out
    ahead = _Hashes(files)
    hashing = asyncio.ensure_future(asyncio.to_thread(ahead.run))
    try:
        verdicts = await client.check([name for _, name, _ in files], [size for *_, size in files], None)
    except BaseException:
        ahead.only(())  # the hashing stops at the next file
        await asyncio.wait([hashing])
        raise
    stored = {i: d for i, (v, d) in enumerate(verdicts) if v == CHECK_SAME and d is not None}
    ahead.only(stored)
    await hashing  # every small file held is hashed by now: only the larger ones are left
    left = [(i, files[i][0], files[i][2], d) for i, d in stored.items() if i not in ahead.done]
    same_bytes = {i: ahead.done[i] == d for i, d in stored.items() if i in ahead.done}
    if left:
        same_bytes.update(await asyncio.to_thread(_hashed_same, left))
    for i, digest in stored.items():
        if same_bytes[i]:
            out[i] = (True, digest)
    return out


async def unchanged_downloads(plan: Sequence[tuple[Entry, Path]], compare: Compare) -> list[bool]:
    """For each ``(entry, local path)`` of a download plan, whether the local
    file already is that entry's file (in the plan's order)."""
    if compare is Compare.NONE or not plan:
        return [False] * len(plan)
    return await asyncio.to_thread(_unchanged, [(dest, entry) for entry, dest in plan], compare)


__all__ = [
    "Compare",
    "listing_prefixes",
    "remote_entries",
    "remote_listing",
    "same",
    "unchanged_downloads",
    "unchanged_uploads",
]
