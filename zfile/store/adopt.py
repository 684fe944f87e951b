"""Adoption (``zfile serve --adopt``): the files under a local store's root
that the catalog does not list, hashed and recorded, so that they are served.

The catalog, not the directory, says what a store holds
(:mod:`zfile.store.recovery`); adoption is the operator saying otherwise,
once: after the catalog was lost or reset, or for a tree copied into the
root by hand (``cp -a``, ``rsync``, a restore from a backup).  Each regular
file no row names is read once and hashed (BLAKE3), then recorded as an
upload would be: size, mtime (ns) and permission bits from its ``lstat(2)``,
received now, no peer.  Nothing is followed or moved; skipped, each logged
with why: names no client could have stored (:func:`check_name`: not UTF-8,
control characters, over the length limits), symbolic links and special
files, mtimes a message cannot carry, files that changed while read (size
or mtime moved) and files that cannot be read.  The private directory and
a file system's ``lost+found`` at the top are not walked.

Cost: one ``lstat`` per entry under the root and one catalog lookup per
directory, plus one read of each file adopted; the rows are written in
transactions of :data:`_BATCH`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from zfile.errors import BadName
from zfile.fileio.hashing import whole_file_digest
from zfile.protocol.digest import DEFAULT_ALGO
from zfile.protocol.events import Entry
from zfile.protocol.limits import mtime_outside
from zfile.protocol.names import PRIVATE_DIR, check_name, quote_name
from zfile.store.catalog import Catalog
from zfile.store.layout import Layout

log = logging.getLogger("zfile.store")

#: Rows recorded in one catalog transaction.
_BATCH = 500
#: What is never the store's at the top of the root: its private directory,
#: and the lost+found of a root that is a file system's own top (a disk for the store).
NOT_STORED_AT_TOP = frozenset({PRIVATE_DIR, "lost+found"})


@dataclass(frozen=True, slots=True)
class Adopted:
    """What :func:`adopt` did: ``files`` recorded holding ``bytes`` in all,
    and ``skipped`` entries it logged and left unserved."""

    files: int = 0
    bytes: int = 0
    skipped: int = 0


def _walk(root: str, max_name_bytes: int) -> Iterator[tuple[list[tuple[str, str, os.stat_result]], list[str]]]:
    """Per directory under ``root``: the regular files as ``(stored name,
    path, lstat)``, and the sentences for what is skipped there (a
    directory that cannot be read among them, in the next step's)."""
    unread: list[str] = []

    def cannot_read(exc: OSError) -> None:
        where = os.path.relpath(exc.filename, root) if exc.filename else "?"
        unread.append(f"{quote_name(where)}: a directory that cannot be read: {exc.strerror}")

    for here, dirs, files in os.walk(root, onerror=cannot_read, followlinks=False):
        rel = os.path.relpath(here, root)
        prefix = "" if rel == "." else rel + "/"
        found: list[tuple[str, str, os.stat_result]] = []
        skipped, unread[:] = unread[:], []
        kept = []
        for d in sorted(dirs):
            if not prefix and d in NOT_STORED_AT_TOP:
                continue
            if os.path.islink(os.path.join(here, d)):
                skipped.append(f"{quote_name(prefix + d)}: a symbolic link (never followed)")
            else:
                kept.append(d)
        dirs[:] = kept
        for base in sorted(files):
            name, path = prefix + base, os.path.join(here, base)
            try:
                st = os.lstat(path)
            except OSError as exc:
                skipped.append(f"{quote_name(name)}: cannot be inspected: {exc.strerror}")
                continue
            why = _refusal(name, st, max_name_bytes)
            if why is not None:
                skipped.append(f"{quote_name(name)}: {why}")
            else:
                found.append((name, path, st))
        yield found, skipped
    if unread:
        yield [], unread


def _refusal(name: str, st: os.stat_result, max_name_bytes: int) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link (never followed)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    try:
        check_name(name, max_name_bytes)
    except BadName as exc:
        return f"a name no client could store ({exc})"
    return mtime_outside(st.st_mtime_ns)


def _hash(path: str, st: os.stat_result) -> bytes | str:
    """The file's digest, or why it is not adopted (it changed while read, or cannot be)."""
    try:
        digest = whole_file_digest(path, st.st_size)
        after = os.lstat(path)
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if digest is None or (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        return "changed while it was read (send it, or adopt it once it is still)"
    return digest


def _entry(name: str, st: os.stat_result, digest: bytes) -> Entry:
    # As an upload records it: permission bits only, received now, a transfer id of its own, no peer.
    mode = st.st_mode & 0o777
    return Entry(name, st.st_size, st.st_mtime_ns, mode, DEFAULT_ALGO, digest, time.time(), uuid.uuid4().hex)


async def adopt(layout: Layout, catalog: Catalog, max_name_bytes: int) -> Adopted:
    """Record every regular file under the open ``layout``'s root that the
    open ``catalog`` does not list (module docstring); call only while no
    upload is live.  StoreError when the catalog cannot be written; a file
    that cannot be adopted is logged and skipped."""
    files = size = skipped = seen = 0
    began = time.monotonic()
    pending: list[Entry] = []
    walk = _walk(layout.real_root, max_name_bytes)
    while (step := await asyncio.to_thread(next, walk, None)) is not None:
        found, refused = step
        seen += len(found)
        for sentence in refused:
            log.warning("adopt: skipped %s", sentence)
        skipped += len(refused)
        listed = await catalog.listed([name for name, _, _ in found]) if found else set()
        todo = [(name, path, st) for name, path, st in found if name not in listed]
        digests = await asyncio.to_thread(lambda todo=todo: [_hash(path, st) for _, path, st in todo])
        for (name, _, st), digest in zip(todo, digests, strict=True):
            if isinstance(digest, str):
                log.warning("adopt: skipped %s: %s", quote_name(name), digest)
                skipped += 1
                continue
            pending.append(_entry(name, st, digest))
            files += 1
            size += st.st_size
        if len(pending) >= _BATCH:
            await catalog.put_many(pending)
            pending = []
    if pending:
        await catalog.put_many(pending)
    if not files:  # adopt = true left in a config pays this walk at every start
        log.info(
            "adopt: nothing to record under %s (%d file(s) looked at in %.1f s, %d skipped); adoption walks "
            "the root at every start it is on for: turn it off once a tree is adopted",
            layout.root,
            seen,
            time.monotonic() - began,
            skipped,
        )
        return Adopted(0, 0, skipped)
    log.info(
        "adopt: recorded %d file(s) (%d bytes) found under %s that the catalog did not list; %d skipped",
        files,
        size,
        layout.root,
        skipped,
    )
    return Adopted(files, size, skipped)


__all__ = ["NOT_STORED_AT_TOP", "Adopted", "adopt"]
