"""Group commit: moving verified uploads to their final names in batches.

A commit is the rename of a sealed (written, verified, fsynced) partial to
its final name, an fsync of the directories whose entries changed, and the
catalog row.  Done one file at a time, each pays a worker-thread hop, a
directory fsync and a catalog transaction with its own journal flush; small
files are then bound by that overhead.  :class:`Publisher` instead lets the
commits that arrive while a batch is being published wait and go together in
the next one: one worker-thread hop renames the whole batch into place, each
directory touched is fsynced once after all its renames, and the catalog
records the batch in one transaction.

Inline uploads (an inline PUT, a PUT-MANY) keep their commit intent in the
catalog, written for the batch in one transaction before the renames and
removed in the transaction that records the files (:mod:`zfile.store.recovery`
finishes an intent a crash cut short).  Streamed uploads keep theirs in
their state file.  The group commit needs only a little of an upload, which
:class:`Sealed` names.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from zfile.errors import StoreError, ZfileError
from zfile.protocol.events import Entry
from zfile.store.catalog import Catalog
from zfile.store.fs import fsync_dir, syncfs


@dataclass(frozen=True, slots=True)
class SyncFs:
    """What a publish leaves to make durable when an fsync of the directory
    is not enough: the whole file system of the directory descriptor ``fd``
    (syncfs(2)).  A file linked from an unnamed inode
    (:mod:`zfile.store.unnamed`) needs its own inode written too (its link
    count), which not every file system's directory fsync does."""

    fd: int


class Sealed(Protocol):
    """An upload whose partial is written, verified and fsynced, ready to publish."""

    @property
    def transfer(self) -> str:
        """The transfer id naming its partial; an intent in the catalog is keyed by it."""
        ...

    @property
    def intent_in_catalog(self) -> bool:
        """True when its commit intent goes into the catalog with the batch
        (an inline upload), False when its state file holds it already."""
        ...

    def publish_to(self, name: str, check_path: Callable[[str], Path]) -> set[Path | int | SyncFs]:
        """Move the partial to its final name ``name`` (``check_path(name)``
        gives and checks its path, when the upload has not checked it
        already against a directory descriptor it holds); return the
        directories whose entries changed, as paths or open descriptors,
        not yet fsynced, or a :class:`SyncFs` for a file system to sync.  Blocking.  BadName; Exists when it must not
        replace a file that is there; OSError."""
        ...


#: One call of :meth:`Publisher.publish` waiting for its batch: its uploads
#: with their entries, and the future its caller awaits (an outcome each).
_Call = tuple[Sequence[tuple[Sealed, Entry]], "asyncio.Future[list[BaseException | None]]"]


class Publisher:
    """The store's group commit.

    ``catalog`` records the entries; ``check_path(name)`` returns the final
    path for ``name`` or raises (BadName, OSError), which an upload that
    holds no checked directory descriptor runs again just before the
    rename, because the tree may have changed since the upload began.
    :attr:`lock` is held from the first rename of a batch to its catalog
    write; :meth:`zfile.store.local.LocalStore.open_download` takes it too, so a
    download never pairs one version's entry with another version's bytes.
    """

    def __init__(self, catalog: Catalog, check_path: Callable[[str], Path]) -> None:
        self._catalog = catalog
        self._check_path = check_path
        self.lock = asyncio.Lock()
        self.queue: list[_Call] = []
        self._task: asyncio.Task[None] | None = None

    async def publish(self, items: Sequence[tuple[Sealed, Entry]]) -> list[BaseException | None]:
        """Move each upload's sealed partial to its final name and record its
        entry; return, for each in order, None when it was published or the
        exception that stopped it (BadName, Exists, OSError from the rename;
        StoreError when the catalog write failed).  The items join the next
        batch.  If the caller is cancelled while they wait, they are not
        published.
        """
        if not items:
            return []
        # One future per call, not per file: a PUT-MANY's files wait together.
        done: asyncio.Future[list[BaseException | None]] = asyncio.get_running_loop().create_future()
        self.queue.append((items, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="zfile-publish")
        # A cancelled caller cancels the future, and the batch skips it.
        return await done

    async def _run(self) -> None:
        while self.queue:
            calls: list[_Call] = []
            try:
                async with self.lock:
                    # Taken under the lock: a commit cancelled while it waited is not published.
                    calls = [call for call in self.queue if not call[1].done()]
                    self.queue = []
                    outcomes = await self._commit([item for items, _ in calls for item in items])
            except BaseException as exc:
                failure = exc if isinstance(exc, Exception) else StoreError("the store closed while publishing")
                for _, done in calls:
                    if not done.done():
                        done.set_exception(failure)
                raise
            start = 0
            for items, done in calls:
                if not done.done():
                    done.set_result(outcomes[start : start + len(items)])
                start += len(items)

    async def _commit(self, batch: list[tuple[Sealed, Entry]]) -> list[BaseException | None]:
        failed: dict[int, BaseException] = {}
        intents = [(k, u.transfer, e) for k, (u, e) in enumerate(batch) if u.intent_in_catalog]
        intent_batch: int | None = None
        try:
            intent_batch = await self._catalog.add_intents([(t, e) for _, t, e in intents])
        except StoreError as exc:
            # Without its intent an inline file must not be renamed: a crash
            # after the rename could not be finished.
            failed = {k: exc for k, _, _ in intents}
            intents = []
        todo = [(k, u, e.name) for k, (u, e) in enumerate(batch) if k not in failed]
        installed = await asyncio.to_thread(self._install, [(u, name) for _, u, name in todo])
        for (k, _, _), exc in zip(todo, installed, strict=True):
            if exc is not None:
                failed[k] = exc
        entries = [e for k, (_, e) in enumerate(batch) if k not in failed]
        try:
            await self._catalog.put_many(entries, done_batch=intent_batch)
        except StoreError as exc:
            failed.update({k: exc for k in range(len(batch)) if k not in failed})
        return [failed.get(k) for k in range(len(batch))]

    def _install(self, batch: list[tuple[Sealed, str]]) -> list[BaseException | None]:
        """Rename each sealed partial into place, then fsync each directory
        touched once; runs in a worker thread."""
        outcomes: list[BaseException | None] = []
        dirs: set[Path | int | SyncFs] = set()
        for upload, name in batch:
            try:
                dirs |= upload.publish_to(name, self._check_path)
                outcomes.append(None)
            except (OSError, ZfileError) as exc:
                outcomes.append(exc)
        try:
            synced: set[int] = set()
            for directory in dirs:
                if isinstance(directory, SyncFs):
                    device = os.fstat(directory.fd).st_dev
                    if device not in synced:  # one syncfs per file system
                        syncfs(directory.fd)
                        synced.add(device)
                elif isinstance(directory, int):
                    os.fsync(directory)
                else:
                    fsync_dir(directory)
        except OSError as exc:
            outcomes = [exc if o is None else o for o in outcomes]
        return outcomes
