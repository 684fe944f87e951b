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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from zfile.errors import StoreError, ZfileError
from zfile.protocol.events import Entry
from zfile.store.catalog import Catalog
from zfile.store.fs import fsync_dir, store_error


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

    def install(self, final: Path, sync_dirs: bool = True) -> set[Path]:
        """Move the partial to ``final``; return the directories whose
        entries changed, fsynced unless ``sync_dirs`` is False.  Blocking.
        Exists when it must not replace a file that is there; OSError."""
        ...


#: A commit waiting for its batch: the upload, its entry, and the future its
#: caller awaits.
_Item = tuple[Sealed, Entry, "asyncio.Future[None]"]


class Publisher:
    """The store's group commit.

    ``catalog`` records the entries; ``check_path(name)`` returns the final
    path for ``name`` or raises (BadName, OSError), run again just before the
    rename because the tree may have changed since the upload began.
    :attr:`lock` is held from the first rename of a batch to its catalog
    write; :meth:`zfile.store.local.LocalStore.open_download` takes it too, so a
    download never pairs one version's entry with another version's bytes.
    """

    def __init__(self, catalog: Catalog, check_path: Callable[[str], Path]) -> None:
        self._catalog = catalog
        self._check_path = check_path
        self.lock = asyncio.Lock()
        self.queue: list[_Item] = []
        self._task: asyncio.Task[None] | None = None

    async def publish(self, items: Sequence[tuple[Sealed, Entry]]) -> list[BaseException | None]:
        """Move each upload's sealed partial to its final name and record its
        entry; return, for each in order, None when it was published or the
        exception that stopped it (BadName, Exists, OSError from the rename;
        StoreError when the catalog write failed).  The items join the next
        batch.  If the caller is cancelled while they wait, they are not
        published.
        """
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        for upload, entry in items:
            done: asyncio.Future[None] = loop.create_future()
            self.queue.append((upload, entry, done))
            waits.append(done)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="zfile-publish")
        # Futures, not coroutines: no task per file.  A cancelled caller
        # cancels them, and the batch skips what is already done.
        outcomes = await asyncio.gather(*waits, return_exceptions=True)
        return [o if isinstance(o, BaseException) else None for o in outcomes]

    async def _run(self) -> None:
        while self.queue:
            batch: list[_Item] = []
            try:
                async with self.lock:
                    # Taken under the lock: a commit cancelled while it waited is not published.
                    batch = [item for item in self.queue if not item[2].done()]
                    self.queue = []
                    outcomes = await self._commit(batch)
            except BaseException as exc:
                failure = exc if isinstance(exc, Exception) else StoreError("the store closed while publishing")
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(failure)
                raise
            for (_, _, done), exc in zip(batch, outcomes, strict=True):
                if done.done():
                    continue
                if exc is None:
                    done.set_result(None)
                else:
                    done.set_exception(exc)

    async def _commit(self, batch: list[_Item]) -> list[BaseException | None]:
        failed: dict[int, BaseException] = {}
        intents = [(k, u.transfer, e) for k, (u, e, _) in enumerate(batch) if u.intent_in_catalog]
        try:
            await self._catalog.add_intents([(t, e) for _, t, e in intents])
        except StoreError as exc:
            # Without its intent an inline file must not be renamed: a crash
            # after the rename could not be finished.
            failed = {k: exc for k, _, _ in intents}
            intents = []
        todo = [(k, u, e.name) for k, (u, e, _) in enumerate(batch) if k not in failed]
        installed = await asyncio.to_thread(self._install, [(u, name) for _, u, name in todo])
        for (k, _, _), exc in zip(todo, installed, strict=True):
            if exc is not None:
                failed[k] = exc
        entries = [e for k, (_, e, _) in enumerate(batch) if k not in failed]
        try:
            await self._catalog.put_many(entries, [t for _, t, _ in intents])
        except StoreError as exc:
            failed.update({k: exc for k in range(len(batch)) if k not in failed})
        return [failed.get(k) for k in range(len(batch))]

    def _install(self, batch: list[tuple[Sealed, str]]) -> list[BaseException | None]:
        """Rename each sealed partial into place, then fsync each directory
        touched once; runs in a worker thread."""
        outcomes: list[BaseException | None] = []
        dirs: set[Path] = set()
        for upload, name in batch:
            try:
                final = self._check_path(name)
            except OSError as exc:
                outcomes.append(store_error(exc, name, "inspect the path of"))
                continue
            except ZfileError as exc:
                outcomes.append(exc)
                continue
            try:
                dirs |= upload.install(final, sync_dirs=False)
                outcomes.append(None)
            except (OSError, ZfileError) as exc:
                outcomes.append(exc)
        try:
            for directory in dirs:
                fsync_dir(directory)
        except OSError as exc:
            outcomes = [exc if o is None else o for o in outcomes]
        return outcomes
