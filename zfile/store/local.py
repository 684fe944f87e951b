"""The local backend of the :class:`~zfile.store.base.Store` interface: files
under a root directory, listed in a catalog.

:class:`LocalStore` checks names and paths, starts uploads and opens downloads,
lists the catalog, sweeps expired partials, and publishes committed uploads
(group commit: the renames into place, then the catalog rows).  Bytes reach
the final name only through ``os.replace`` of a complete, verified, fsynced
temporary file, so a reader sees the old file or the new one, never a
mixture; the catalog row follows.  The parts it delegates, each in a module
of its own that imports only those listed after it:

- :mod:`~zfile.store.partial`: an upload in progress (:class:`Upload`): the
  partial file under ``<root>/.zfile/tmp``, resume, the commit intent;
- :mod:`~zfile.store.wholes`: whole files held in memory (inline PUTs,
  PUT-MANY), a batch per worker-thread hop;
- :mod:`~zfile.store.reader`: reading a stored file (:class:`Download`);
- :mod:`~zfile.store.recovery`: the reconciliation at startup;
- :mod:`~zfile.store.group_commit`: publishing commits in batches;
- :mod:`~zfile.store.claims`: which partials a live upload holds (Busy);
- :mod:`~zfile.store.reclaim`: the partials kept for resume, swept when
  they expire and reclaimed past their bounds (:mod:`~zfile.store.litter`);
- :mod:`~zfile.store.layout`: the paths on disk and their checks;
- :mod:`~zfile.store.catalog`: the SQLite catalog;
- :mod:`~zfile.store.fs`: the ``OSError`` mapping and the fsync and unlink
  helpers.

``Upload``, ``Download`` and ``transfer_id`` are importable from here too.

``OSError`` never escapes: ENOSPC, EDQUOT and EFBIG become
:class:`~zfile.errors.NoSpace`, anything else a
:class:`~zfile.errors.StoreError` naming the file.  Sizes and offsets are
bytes, ``mtime_ns`` nanoseconds since the epoch, ages and TTLs seconds.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import aiofiles

from zfile.errors import (
    BadName,
    ErrorCode,
    NoSpace,
    NotFound,
    TooLarge,
    ZfileError,
)
from zfile.protocol import digest as digests
from zfile.protocol.events import Buffer, Entry, PutFile
from zfile.protocol.names import check_name, check_prefix, quote_name
from zfile.protocol.quickcheck import Held
from zfile.store import moves
from zfile.store.base import Store, StoreUsage
from zfile.store.catalog import Catalog
from zfile.store.claims import Claims
from zfile.store.fs import store_error
from zfile.store.group_commit import Publisher
from zfile.store.layout import Layout, exists_error
from zfile.store.litter import Limits, PartialBounds
from zfile.store.partial import StreamUpload, Upload, probe_partial, transfer_id
from zfile.store.reader import Download
from zfile.store.reclaim import PartialKeeper
from zfile.store.recovery import Reconciled, finish_commits, reconcile
from zfile.store.wholes import Staged, store_batch

__all__ = ["Download", "LocalStore", "StreamUpload", "Upload", "transfer_id"]

log = logging.getLogger("zfile.store")

# A peer decides permission bits, not setuid/setgid/sticky on the daemon's disk.
_MODE_MASK = 0o777
# Seconds between attempts to make a read-only catalog writable again.
_RETRY_WRITABLE_S = 5.0


def _open_nofollow(path: str, flags: int) -> int:
    # O_NONBLOCK: opening a FIFO planted under a stored name must not hang a thread.
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


def _state(name: str, size: int, mtime_ns: int, mode: int, algo: str, peer: str) -> dict:
    """What an upload's state file records (mode masked: no setuid, setgid or sticky bits from a peer)."""
    return dict(name=name, size=size, mtime_ns=mtime_ns, mode=mode & _MODE_MASK, algo=algo, peer=peer)


class LocalStore(Store):
    """Files under ``root``; see the module docstring.

    ``max_file_size`` and ``max_name_bytes`` are in bytes; partials untouched
    for ``partial_ttl`` seconds are deleted by :meth:`sweep_partials`, and
    the oldest are reclaimed as soon as the partials kept exceed
    ``partial_limits`` (:class:`~zfile.store.litter.Limits`).  With
    ``adopt``, opening records the files under the root that the catalog
    does not list (:mod:`zfile.store.adopt`).  Its parts are public for tools and tests that know this backend:
    :attr:`layout` (paths and checks), :attr:`catalog`, :attr:`claims` (the
    live uploads) and :attr:`publisher` (the group commit).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        max_file_size: int = 1 << 40,
        max_name_bytes: int = 4096,
        partial_ttl: float = 86400.0,
        partial_limits: Limits | None = None,
        adopt: bool = False,
    ) -> None:
        self.root = Path(root)
        self.adopt = adopt
        self.max_file_size = max_file_size
        self.max_name_bytes = max_name_bytes
        self.partial_ttl = partial_ttl
        self.layout = Layout(self.root)
        self.catalog = Catalog(self.layout.catalog_path)
        self.claims: Claims[Upload] = Claims(self._released)
        #: The partials on disk, held within ``partial_limits``.
        self.partials = PartialBounds(partial_limits or Limits())
        #: Their sweep and reclaim.
        self.keeper = PartialKeeper(self.layout, self.claims, self.partials, partial_ttl)
        self._retry_writable_at = 0.0
        # Group commit; its lock is also held by open_download from catalog
        # read to open, so a download never pairs one version's entry with
        # another version's bytes.
        self.publisher = Publisher(self.catalog, lambda name: self.layout.check_path(name, True))
        self.renames = moves.Renames(self.layout, self.catalog, self.publisher, max_name_bytes=max_name_bytes)
        self.reconciled = Reconciled()

    @property
    def location(self) -> str:
        """The root directory, as given."""
        return str(self.root)

    def usage(self) -> StoreUsage:
        """The partials the bounds count, and the disk's free bytes for
        unprivileged writers (statvfs ``f_bavail``; None when it fails)."""
        try:
            fs = os.statvfs(self.root)
            free: int | None = fs.f_bavail * fs.f_frsize
        except OSError:
            free = None
        return StoreUsage(len(self.partials), self.partials.bytes, free)

    def mend(self) -> str | None:
        """Store.mend: :meth:`Layout.mend <zfile.store.layout.Layout.mend>`,
        then :meth:`Catalog.mend <zfile.store.catalog.Catalog.mend>`."""
        mended = [why for why in (self.layout.mend(), self.catalog.mend()) if why is not None]
        return "; ".join(mended) or None

    def lost(self) -> str | None:
        """Store.lost: :meth:`Layout.lost <zfile.store.layout.Layout.lost>`,
        then :meth:`Catalog.lost <zfile.store.catalog.Catalog.lost>` (the
        files it listed stay under the root: ``--adopt`` lists them again)."""
        if (why := self.layout.lost()) is not None:
            return why
        if (why := self.catalog.lost()) is not None:
            return f"{why}; the files stay under the root, and a start with --adopt lists them again"
        if (why := self.catalog.sides_lost()) is not None:
            return f"{why}; closing the catalog writes what its log held into it"
        return None

    async def open(self) -> None:
        """Create ``root`` and its private directory, open the catalog,
        reconcile it with the files on disk (:func:`zfile.store.recovery.reconcile`;
        what changed is left in :attr:`reconciled`) and sweep expired
        partials.  Raises StoreError when any of that fails."""
        await self.layout.open()
        try:
            await self.catalog.open()
            if not self.catalog.read_only:  # (it logged why it is)
                # Before any transfer: settle what a crash or a hand edit left behind.
                self.reconciled = await reconcile(self.layout, self.catalog, self.max_name_bytes, adopting=self.adopt)
            await self.keeper.open()
        except BaseException:
            self.layout.close()  # the store's lock with it
            raise

    async def close(self) -> None:
        """Suspend live uploads (their partials stay resumable) and close the catalog."""
        uploads = self.claims.uploads()
        await asyncio.gather(*(u.suspend() for u in uploads), return_exceptions=True)
        await self.keeper.settled()
        await self.catalog.close()
        self.layout.close()

    async def begin_upload(
        self, *, name: str, size: int, mtime_ns: int, mode: int, algo: str, clobber: bool, peer: str
    ) -> Upload:
        """Start, or resume, an upload of ``size`` bytes to ``name``.

        Checks, in this order: the name (BadName; also BadName when the path
        resolves outside the root or is a symlink or directory); ``algo``
        (ZfileError bad-request); ``size`` (negative: ZfileError bad-request,
        over max_file_size: TooLarge); with ``clobber`` False, an existing
        entry or file of that name (Exists); free space for the bytes still
        to come (NoSpace); another live upload of the same partial (Busy).
        A partial left by an upload of the same name, size, mtime_ns and algo
        is resumed: the returned Upload's ``offset`` says where to continue.
        ``mode`` is applied masked to 0o777.
        """
        return await self._begin(name, size, mtime_ns, mode, algo, clobber, peer, resume=True)

    async def begin_stream(
        self, *, name: str, mtime_ns: int, mode: int, algo: str, clobber: bool, peer: str
    ) -> StreamUpload:
        """Start an upload whose size is known only at its commit
        (:class:`~zfile.store.partial.StreamUpload`: its partial under a
        fresh transfer id, never resumed), held to ``max_file_size`` bytes.

        The checks of :meth:`begin_upload` that need no size, in its order:
        the name (BadName), ``algo`` (ZfileError bad-request), an existing
        entry or file when ``clobber`` is False (Exists); NoSpace while the
        catalog cannot be written.  Free space is not checked ahead: a full
        disk fails a write with NoSpace."""
        hasher = self._admit(name, 0, algo)
        await self._writable()
        await self._refuse_existing(name, clobber)
        transfer = uuid.uuid4().hex  # the fixed length of every partial's name
        state = _state(name, 0, mtime_ns, mode, algo, peer)
        upload = StreamUpload(
            self.layout, self.claims, self.publisher, transfer, state, clobber, hasher, self.max_file_size
        )
        self.claims.claim(transfer, upload, name)
        await upload.prepare()
        self.partials.note(transfer, peer, 0, time.time())
        return upload

    async def _refuse_existing(self, name: str, clobber: bool) -> None:
        """BadName for a path the store cannot use; with ``clobber`` False,
        Exists when ``name`` has an entry or its path holds a file."""
        final = await self.layout.resolve(name, True)
        if not clobber and (
            await self.catalog.get(name) is not None or await asyncio.to_thread(os.path.lexists, final)
        ):
            raise exists_error(name)

    async def _writable(self) -> None:
        """NoSpace while the catalog is read-only (its disk full); tries to
        make it writable again at most every few seconds, and then records
        what a full disk kept it from recording (commit intents)."""
        if self.catalog.read_only:
            now = time.monotonic()
            if now < self._retry_writable_at or not await self._retry_writable(now):
                raise NoSpace("the store's disk is full: no upload is accepted until space is freed on the daemon")
        if self.catalog.behind:
            async with self.publisher.lock:  # no commit is under way: every intent left is one cut short
                await finish_commits(self.layout, self.catalog, self.max_name_bytes, self.partials.forget)
            self.catalog.behind = False

    async def _retry_writable(self, now: float) -> bool:
        self._retry_writable_at = now + _RETRY_WRITABLE_S
        if not await self.catalog.try_writable():
            return False
        log.info("the store's catalog %s is writable again: accepting uploads", self.catalog.path)
        return True

    async def _begin(
        self,
        name: str,
        size: int,
        mtime_ns: int,
        mode: int,
        algo: str,
        clobber: bool,
        peer: str,
        *,
        resume: bool,
    ) -> Upload:
        hasher = self._admit(name, size, algo)
        await self._writable()
        listed = not clobber and await self.catalog.get(name) is not None
        transfer = transfer_id(name, size, mtime_ns)
        state = _state(name, size, mtime_ns, mode, algo, peer)
        # The disk checks in one worker-thread hop, the partial opened in one
        # more (Upload.prepare): a hop costs about 0.1 ms of CPU, and a
        # hundred uploads begun at once paid for eight each.
        await asyncio.to_thread(self._check_begin, name, size, clobber, listed, transfer, state, resume)
        upload = self._claim(transfer, state, clobber, hasher)
        await upload.prepare(resume)
        self.keeper.kept(transfer, peer, upload.offset, name)
        return upload

    async def put_inline(
        self,
        *,
        name: str,
        size: int,
        mtime_ns: int,
        mode: int,
        algo: str,
        clobber: bool,
        peer: str,
        data: Buffer,
        digest: bytes,
    ) -> Entry:
        """Store a whole file sent in one message and return its entry.

        The checks and errors of :meth:`begin_upload` and :meth:`Upload.commit`
        apply; IntegrityError also when ``data`` is not ``size`` bytes.  Any
        partial of the same file is discarded rather than resumed.
        """
        whole = PutFile(name, size, mtime_ns, mode, digest, clobber, data)
        (result,) = await self.put_many([whole], algo=algo, peer=peer)
        if isinstance(result, ZfileError):
            raise result
        return result

    async def put_many(self, files: Sequence[PutFile], *, algo: str, peer: str) -> list[Entry | ZfileError]:
        """Store whole files sent in one message (a PUT-MANY) and return, for
        each file in order, its entry or the error that refused it, as
        :meth:`put_inline` would have raised it; a refused file never stops
        the others.  ``algo`` is the digest algorithm of every ``digest``,
        ``peer`` who sent them.  Two files of one batch with the same name,
        size and mtime: the second is refused as Busy.
        """
        try:
            await self._writable()
        except NoSpace as exc:
            return [exc] * len(files)
        results: list[Entry | ZfileError | None] = [None] * len(files)
        batch: list[Staged] = []
        at: list[int] = []
        try:
            digests.new_hasher(algo)
            admit = self._admit_known_algo  # the batch's one algorithm checked once
        except ZfileError:
            admit = self._admit  # each file refused with its own first error
        for k, f in enumerate(files):
            # The checks of _begin that need no disk; the rest run in the batch's worker-thread hop.
            try:
                admit(f.name, f.size, algo)
                transfer = transfer_id(f.name, f.size, f.mtime_ns)
                staged = Staged(
                    transfer, f.name, f.size, f.mtime_ns, f.mode & _MODE_MASK, peer, f.clobber, f.data, f.digest
                )
                self.claims.claim(transfer, staged, f.name)
            except ZfileError as exc:
                results[k] = exc
                continue
            # The partials on disk are known here, so the write needs no lstat to find a stale one.
            staged.stale = transfer in self.partials
            batch.append(staged)
            at.append(k)
        if not batch:
            return results  # type: ignore[return-value]
        unclobbering = [s for s in batch if not s.clobber]
        if unclobbering:
            try:
                listed = await self.catalog.listed([s.name for s in unclobbering])
            except ZfileError as exc:
                for s in batch:
                    self.claims.release(s.transfer, s)
                return [exc if r is None else r for r in results]
            for s in unclobbering:
                s.listed = s.name in listed
        stored = await store_batch(self.layout, self.claims, self.publisher, batch, algo)
        for k, result in zip(at, stored, strict=True):
            results[k] = result
        if len(self.partials):
            self.keeper.superseded(
                [(s.name, s.transfer) for s, r in zip(batch, stored, strict=True) if isinstance(r, Entry)]
            )
        return results  # type: ignore[return-value]

    def _admit_known_algo(self, name: str, size: int, algo: str) -> None:
        """:meth:`_admit` for an ``algo`` known to be valid, without a hasher."""
        self.layout.check_open()
        check_name(name, self.max_name_bytes)
        if size < 0 or size > self.max_file_size:
            self._admit(name, size, algo)

    def _admit(self, name: str, size: int, algo: str) -> digests.Hasher:
        """The checks of an upload that need no disk, in order: store open,
        name (BadName), algorithm (bad-request), size negative (bad-request)
        or over ``max_file_size`` (TooLarge).  Returns a fresh hasher."""
        self.layout.check_open()
        check_name(name, self.max_name_bytes)
        hasher = digests.new_hasher(algo)
        if size < 0:
            raise ZfileError(f"the size of {quote_name(name)} is negative ({size} bytes)", code=ErrorCode.BAD_REQUEST)
        if size > self.max_file_size:
            raise TooLarge(f"{quote_name(name)} is {size} bytes; the store accepts at most {self.max_file_size} bytes")
        return hasher

    def _check_begin(
        self, name: str, size: int, clobber: bool, listed: bool, transfer: str, state: dict, resume: bool
    ) -> None:
        """The disk checks of :meth:`_begin`, blocking: the path (BadName),
        an existing file unless ``clobber`` (Exists; ``listed`` says the
        catalog has the name), free space for the bytes a matching partial
        does not hold yet (NoSpace); StoreError when the tree cannot be
        inspected."""
        held = probe_partial(self.layout.tmp, transfer, state) if resume else 0
        self.layout.check_inline(name, size - held, clobber, listed)

    def _claim(self, transfer: str, state: dict, clobber: bool, hasher: digests.Hasher) -> Upload:
        """Make the Upload of ``transfer`` and claim its partial, or raise
        Busy when another live upload holds it.  No await between the check
        and the claim, so a racing begin sees it."""
        upload = Upload(self.layout, self.claims, self.publisher, transfer, state, clobber, hasher)
        self.claims.claim(transfer, upload, state["name"])
        return upload

    def _released(self, upload: Upload) -> None:
        if upload.kept:
            self.keeper.kept(upload.transfer, upload.peer, upload.offset, upload.name)
        else:
            self.partials.forget(upload.transfer)
            if upload.published:
                self.keeper.superseded([(upload.name, upload.transfer)])

    async def lookup(self, name: str) -> Entry:
        """Return the catalog entry of ``name``; BadName or NotFound."""
        self.layout.check_open()
        check_name(name, self.max_name_bytes)
        entry = await self.catalog.get(name)
        if entry is None:
            raise NotFound(f"{quote_name(name)} is not in the store")
        return entry

    async def delete(self, name: str) -> Entry:
        """Remove ``name``'s file and catalog row (:func:`zfile.store.moves.delete`)."""
        return await moves.delete(self.layout, self.catalog, self.publisher, name, max_name_bytes=self.max_name_bytes)

    async def delete_many(self, names: Sequence[str]) -> list[Entry | ZfileError]:
        """Remove many files at once (:func:`zfile.store.moves.delete_many`)."""
        return await moves.delete_many(
            self.layout, self.catalog, self.publisher, names, max_name_bytes=self.max_name_bytes
        )

    async def rename(self, old: str, new: str, *, clobber: bool = False) -> Entry:
        """Rename ``old`` to ``new``, file and row in one step for readers
        (:class:`zfile.store.moves.Renames`, which says what a crash leaves)."""
        return await self.renames.rename(old, new, clobber=clobber)

    async def open_download(self, name: str) -> Download:
        """Open ``name`` for reading.

        Raises BadName for a bad name, a path through a symlink leaving the
        root or a symlink at the name itself; NotFound when the catalog has no
        entry or the file is missing or not a regular file; StoreError for
        other failures.
        """
        self.layout.check_open()
        check_name(name, self.max_name_bytes)
        q = quote_name(name)
        async with self.publisher.lock:
            entry = await self.catalog.get(name)
            if entry is None:
                raise NotFound(f"{q} is not in the store")
            path = await self.layout.resolve(name, False)
            try:
                file = await aiofiles.open(path, "rb", opener=_open_nofollow)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EMLINK):
                    raise BadName(f"{q} is a symbolic link in the store") from exc
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
                    raise NotFound(f"{q} is in the catalog but missing from the disk") from exc
                raise store_error(exc, name, "open") from exc
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            await file.close()
            raise NotFound(f"{q} is in the catalog but is not a regular file on the disk")
        return Download(entry, file)

    async def held(self, names: Sequence[str]) -> dict[str, Held]:
        """What a CHECK compares of those of ``names`` the catalog holds (Store.held)."""
        self.layout.check_open()
        return await self.catalog.held(names)

    async def list(self, prefix: str = "", after: str = "", limit: int = 1000) -> list[Entry]:
        """Up to ``limit`` entries whose names start with ``prefix`` and sort
        after ``after``, by name.  BadName for a bad prefix or cursor."""
        self.layout.check_open()
        check_prefix(prefix, self.max_name_bytes)
        try:
            after.encode()
        except UnicodeEncodeError:
            raise BadName(f"the cursor {quote_name(after)} cannot be encoded as UTF-8")
        return await self.catalog.list(prefix, after, limit)

    async def sweep_partials(self, now: float | None = None) -> int:
        """Delete partials (``.part`` and ``.json``) whose state file was last
        touched more than ``partial_ttl`` seconds before ``now`` (seconds since
        the epoch; default the current time) and that no live upload holds.
        Returns how many partials were deleted; StoreError when the partials'
        directory cannot be listed."""
        return await self.keeper.sweep(now)
