"""Startup reconciliation: make the catalog agree with the files on disk.

The store publishes a file in two steps, ``os.replace`` of the verified temp
file and then the catalog row (:mod:`zfile.store.group_commit`), and a file
can be changed by hand while the daemon is down.  So at startup, before any
transfer, the store runs :func:`reconcile` on its layout and catalog, which
settles every way the two can disagree:

1. **A commit cut short** (``kill -9`` or power loss between the rename and
   the catalog write).  ``Upload.commit`` first records its verified digest in
   the partial's state file (a *commit intent*).  An intent whose temp file is
   gone, and whose final file has the intent's size and mtime, was published:
   its row is written now.  An intent whose temp file is still there was not
   published and stays a resumable partial (a ``clobber=False`` commit cut
   between ``link`` and ``unlink`` has both names on one inode: the temp name
   is dropped and the row written).  An inline upload records the same
   intent as a row of the catalog's ``intents`` table instead of a state
   file, and its file is recorded only when its bytes also hash to the
   intent's digest.
2. **A row whose file is missing**, or is no longer a regular file (a
   directory, a symlink, a FIFO put there by hand): the row is deleted, since
   the file cannot be served.
3. **A file replaced behind the catalog's back**: its size or mtime (ns)
   differs from the row's.  The disk is the truth: the file is re-hashed with
   the row's algorithm and the row updated (size, mtime, mode, digest,
   ``received`` = now, ``peer`` = ""), so a download is verified against the
   bytes actually served.  A change that keeps both size and mtime is not
   detected; zfile itself never makes one (it sets mtime on every commit).

4. **A partial without a state file** (``.part`` without ``.json``: a crash
   between a whole file's write and its batch's commit intent, between a
   streamed upload's create and its state file, or in the middle of a
   PUT-STREAM, whose partial has no state file before its commit) cannot
   be resumed: it is deleted.

Files under the root that no row names and no intent explains are left alone
and not served: the catalog, not the directory, says what the store holds.
So that this is never silent where it matters most (a catalog lost or
reset, a tree copied into the root by hand), the entries at the top of the
root that hold nothing the catalog lists are logged, as a warning
(:attr:`Reconciled.unlisted`); a stray file deeper down is not looked for.

Cost: one ``lstat`` per row (read in pages of 1000), plus a hash of each
replaced file, plus a listing of the root's top level and a lookup per
entry there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zfile.errors import BadName, StoreError, ZfileError
from zfile.fileio.hashing import hash_file_prefix
from zfile.protocol.events import Entry
from zfile.protocol.names import check_name, quote_name
from zfile.store.adopt import NOT_STORED_AT_TOP, adopt
from zfile.store.catalog import Catalog
from zfile.store.layout import Layout

log = logging.getLogger("zfile.store")

_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What :func:`reconcile` changed: rows ``recorded`` from commit intents,
    rows ``dropped`` (file missing or not a regular file), rows ``rehashed``
    (file replaced behind the catalog's back), and the names at the top of
    the root, in order, that hold nothing the catalog lists (``unlisted``:
    not served), and the files ``adopted`` (:mod:`zfile.store.adopt`)."""

    recorded: int = 0
    dropped: int = 0
    rehashed: int = 0
    unlisted: tuple[str, ...] = ()
    adopted: int = 0


async def reconcile(layout: Layout, catalog: Catalog, max_name_bytes: int, *, adopting: bool = False) -> Reconciled:
    """Settle the open ``catalog`` against the files of the open ``layout``
    (module docstring); a commit intent whose name is over
    ``max_name_bytes`` bytes is not finished.  With ``adopting``, then
    record the files no row names (:func:`zfile.store.adopt.adopt`).  Call
    only while no upload is live.  Raises StoreError when
    the catalog cannot be read or written.  A file that cannot be inspected
    (``lstat`` fails other than "not there") is logged and its row left as
    it was; a replaced file that cannot be re-hashed is logged and dropped,
    since its row's digest would fail every download."""
    recorded = await finish_commits(layout, catalog, max_name_bytes)
    with contextlib.suppress(OSError):
        if orphans := await asyncio.to_thread(_drop_stateless_partials, layout.tmp):
            log.info("removed %d partial file(s) without a state file, left by a crash mid-write", orphans)
    dropped = rehashed = 0
    after = ""
    while True:
        page = await catalog.list("", after, _PAGE)
        # One worker hop per page, not per row: a store of many small files
        # otherwise spends its start-up in thread hand-offs.
        verdicts = await asyncio.to_thread(_examine_page, layout, page)
        for entry, verdict in zip(page, verdicts, strict=True):
            if verdict == "drop":
                log.warning(
                    "catalog: %s is missing from the disk (or not a regular file); forgetting it",
                    quote_name(entry.name),
                )
                await catalog.delete(entry.name)
                dropped += 1
            elif isinstance(verdict, Entry):
                log.warning("catalog: %s was changed on disk; re-hashed it", quote_name(entry.name))
                await catalog.put(verdict)
                rehashed += 1
        if len(page) < _PAGE:
            break
        after = page[-1].name
    adopted = (await adopt(layout, catalog, max_name_bytes)).files if adopting else 0
    unlisted = await _unlisted_at_top(layout, catalog)
    if unlisted and not adopting:  # (adopting said why of each entry it left)
        shown = ", ".join(quote_name(n) for n in unlisted[:5]) + (" and more" if len(unlisted) > 5 else "")
        log.warning(
            "%d entr%s at the top of %s hold%s nothing the catalog lists (%s): not served, as the catalog, "
            "not the directory, says what the store holds; send the files, or start with --adopt, to serve them",
            len(unlisted),
            "y" if len(unlisted) == 1 else "ies",
            layout.root,
            "s" if len(unlisted) == 1 else "",
            shown,
        )
    return Reconciled(recorded, dropped, rehashed, unlisted, adopted)


async def _unlisted_at_top(layout: Layout, catalog: Catalog) -> tuple[str, ...]:
    """The names at the top of the root (the private directory aside) under
    which, or as which, the catalog lists no file; an unreadable root gives none."""
    try:
        tops = sorted(await asyncio.to_thread(os.listdir, layout.real_root))
    except OSError:
        return ()
    tops = [n for n in tops if n not in NOT_STORED_AT_TOP]
    storable = [n for n in tops if _storable(n)]
    as_files = await catalog.listed(storable) if storable else set()
    unlisted = []
    for name in tops:
        if name not in as_files and not (name in storable and await catalog.list(f"{name}/", "", 1)):
            unlisted.append(name)
    return tuple(unlisted)


def _storable(name: str) -> bool:
    try:
        check_name(name)
    except BadName:
        return False
    return True


def _examine_page(layout: Layout, page: list[Entry]) -> list[str | Entry | None]:
    """:func:`_examine` for each entry of ``page``, its parents' real paths resolved once."""
    realpaths: dict[str, str] = {}
    return [_examine(layout, entry, realpaths) for entry in page]


def _examine(layout: Layout, entry: Entry, realpaths: dict[str, str]) -> str | Entry | None:
    """Return "drop", a replacement Entry, or None when the row is right."""
    try:
        path = layout.check_path(entry.name, False, realpaths)
        st = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return "drop"
    except ZfileError:
        return "drop"  # resolves outside the root now: it cannot be served
    except OSError as exc:
        log.error("catalog: cannot inspect %s: %s", quote_name(entry.name), exc.strerror or exc)
        return None
    if not stat.S_ISREG(st.st_mode):
        return "drop"
    if (st.st_size, st.st_mtime_ns) == (entry.size, entry.mtime_ns):
        return None
    try:
        digest = hash_file_prefix(str(path), st.st_size, entry.algo).digest()
    except (OSError, EOFError, ZfileError) as exc:
        log.error("catalog: cannot re-hash %s: %s", quote_name(entry.name), exc)
        return "drop"
    return Entry(
        name=entry.name,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        mode=stat.S_IMODE(st.st_mode),
        algo=entry.algo,
        digest=digest,
        received=time.time(),
        id=uuid.uuid4().hex,
        peer="",
    )


async def finish_commits(
    layout: Layout, catalog: Catalog, max_name_bytes: int, cleared: Callable[[str], None] | None = None
) -> int:
    """Finish every commit a crash or a full disk cut short: the catalog's
    intents (:func:`finish_catalog_intents`), then the streamed uploads'
    state files holding a verified digest whose file reached its final name
    with the intent's size and mtime; return how many rows were recorded.
    ``cleared(transfer)`` is told of each state file removed, its partial
    being gone.  At start, and while the store runs under the group
    commit's lock (a live upload's intent is then one whose partial has not
    been renamed yet, which is left alone).  StoreError when the partials'
    directory cannot be listed or the catalog written."""
    try:
        intents = await asyncio.to_thread(_read_intents, layout.tmp)
    except OSError as exc:
        raise StoreError(f"could not list partial uploads in {layout.tmp}: {exc.strerror or exc}") from exc
    recorded = await finish_catalog_intents(layout, catalog, max_name_bytes)
    for state_path, state in intents:
        entry = await asyncio.to_thread(_published, layout, max_name_bytes, state_path, state)
        if entry is not None:
            old = await catalog.get(entry.name)
            if old is not None and old.digest == entry.digest:
                entry = None  # the row was written; only the state file's removal was cut short
        if entry is not None:
            await catalog.put(entry)
            recorded += 1
            log.warning("catalog: recorded %s, whose commit was cut short", quote_name(entry.name))
        if not state_path.with_suffix(".part").exists():
            with contextlib.suppress(OSError):
                state_path.unlink()
                if cleared is not None:
                    cleared(state_path.stem)
    return recorded


async def finish_catalog_intents(layout: Layout, catalog: Catalog, max_name_bytes: int) -> int:
    """Record the file of each commit intent the catalog holds (a batch's,
    a ``mv``'s) that reached its final name with the intent's bytes
    (re-hashed), drop the others' partials, and remove the intents; return
    how many rows were recorded.  At start, and while the store runs once a
    catalog the disk filled is writable again, under the group commit's
    lock (then every intent left is one whose rows could not be written).
    Raises StoreError (NoSpace) when the catalog cannot be written."""
    recorded = 0
    listed = await catalog.intents()
    for transfer, intent in listed:
        state = dict(
            name=intent.name,
            size=intent.size,
            mtime_ns=intent.mtime_ns,
            mode=intent.mode,
            algo=intent.algo,
            digest=intent.digest.hex(),
            peer=intent.peer,
        )
        state_path = layout.state_path(transfer)
        entry = await asyncio.to_thread(_published, layout, max_name_bytes, state_path, state, True)
        if entry is None:
            # Not published: an inline upload's partial, which has no state file, cannot be resumed.
            await asyncio.to_thread(_drop_orphan, layout.part_path(transfer))
        else:
            old = await catalog.get(entry.name)
            if old is None or old.digest != entry.digest:
                await catalog.put(entry)
                recorded += 1
                log.warning("catalog: recorded %s, whose commit was cut short", quote_name(entry.name))
    await catalog.drop_intents([transfer for transfer, _ in listed])
    return recorded


def _drop_orphan(part: Path) -> None:
    if not part.with_suffix(".json").exists():
        with contextlib.suppress(OSError):
            part.unlink()


def _drop_stateless_partials(tmp: Path) -> int:
    """Delete every ``.part`` in ``tmp`` without its ``.json``; return how
    many.  Nothing can resume one (a resume needs the state file, which a
    streamed upload writes before its first byte; a PUT-STREAM, which
    cannot resume, writes it only at its commit), and a whole file's
    partial is not published once the store restarts: it is what a crash
    left between a batch's write and its commit intent."""
    with os.scandir(tmp) as items:
        names = {item.name for item in items}
    dropped = 0
    for name in names:
        if name.endswith(".part") and f"{name[:-5]}.json" not in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp / name)
                dropped += 1
    return dropped


def _read_intents(tmp: Path) -> list[tuple[Path, dict]]:
    intents = []
    for path in tmp.iterdir():
        if path.suffix != ".json":
            continue
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(path.read_text())
            if isinstance(state, dict) and isinstance(state.get("digest"), str):
                intents.append((path, state))
    return intents


def _published(
    layout: Layout, max_name_bytes: int, state_path: Path, state: dict, rehash: bool = False
) -> Entry | None:
    """The entry to record for a commit intent whose file reached its name;
    with ``rehash``, only when the file's bytes have the intent's digest."""
    try:
        name = check_name(state["name"], max_name_bytes)
        final = layout.check_path(name, False)
        fst = final.lstat()
        part = state_path.with_suffix(".part")
        if part.exists():
            if not os.path.samefile(part, final):
                return None  # not published: the partial stays resumable
            part.unlink()  # link() done, unlink() cut short
        if not stat.S_ISREG(fst.st_mode) or (fst.st_size, fst.st_mtime_ns) != (state["size"], state["mtime_ns"]):
            return None
        digest = bytes.fromhex(state["digest"])
        if rehash and hash_file_prefix(str(final), fst.st_size, state["algo"]).digest() != digest:
            return None
        return Entry(
            name=name,
            size=state["size"],
            mtime_ns=state["mtime_ns"],
            mode=state["mode"],
            algo=state["algo"],
            digest=digest,
            received=time.time(),
            id=uuid.uuid4().hex,
            peer=state.get("peer", ""),
        )
    except (OSError, EOFError, KeyError, TypeError, ValueError, ZfileError):
        return None
