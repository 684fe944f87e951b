"""The daemon's file store: files under a root directory, listed in a catalog.

:class:`Store` checks names and paths, starts uploads and opens downloads,
lists the catalog, sweeps expired partials, and publishes committed uploads
(group commit: the renames into place, then the catalog rows).  Bytes reach
the final name only through ``os.replace`` of a complete, verified, fsynced
temporary file, so a reader sees the old file or the new one, never a
mixture; the catalog row follows.  The parts it delegates:

- :mod:`zfile.upload`: an upload in progress (:class:`Upload`): the partial
  file under ``<root>/.zfile/tmp``, resume, the commit intent;
- :mod:`zfile.download`: reading a stored file (:class:`Download`);
- :mod:`zfile.disk`: the ``OSError`` mapping and the fsync and unlink helpers;
- :mod:`zfile.catalog`, :mod:`zfile.names`, :mod:`zfile.recovery`: the SQLite
  catalog, the name rules, and the reconciliation at startup.

``Upload``, ``Download`` and ``transfer_id`` are importable from here too.

``OSError`` never escapes: ENOSPC, EDQUOT and EFBIG become
:class:`~zfile.errors.NoSpace`, anything else a
:class:`~zfile.errors.StoreError` naming the file.  Sizes and offsets are
bytes, ``mtime_ns`` nanoseconds since the epoch, ages and TTLs seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path

import aiofiles
import aiofiles.os

from zfile.errors import (
    BadName,
    Busy,
    ErrorCode,
    Exists,
    NoSpace,
    NotFound,
    StoreError,
    TooLarge,
    ZfileError,
)
from zfile.protocol import digest as digests
from zfile.protocol.events import Buffer, Entry, PutFile
from zfile.protocol.names import PRIVATE_DIR, check_name, check_prefix, quote_name
from zfile.store.catalog import Catalog
from zfile.store.fs import store_error, unlink_all
from zfile.store.group_commit import Publisher
from zfile.store.partial import Upload, commit_wholes, probe_partial, transfer_id
from zfile.store.reader import Download
from zfile.store.recovery import Reconciled, reconcile

__all__ = ["Download", "Store", "Upload", "transfer_id"]

# A peer decides permission bits, not setuid/setgid/sticky on the daemon's disk.
_MODE_MASK = 0o777


def _open_nofollow(path: str, flags: int) -> int:
    # O_NONBLOCK: opening a FIFO planted under a stored name must not hang a thread.
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


def _state(name: str, size: int, mtime_ns: int, mode: int, algo: str, peer: str) -> dict:
    """What an upload's state file records (mode masked: no setuid, setgid or sticky bits from a peer)."""
    return dict(name=name, size=size, mtime_ns=mtime_ns, mode=mode & _MODE_MASK, algo=algo, peer=peer)


class Store:
    """Files under ``root``; see the module docstring.

    ``max_file_size`` and ``max_name_bytes`` are in bytes; partials untouched
    for ``partial_ttl`` seconds are deleted by :meth:`sweep_partials`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        max_file_size: int = 1 << 40,
        max_name_bytes: int = 4096,
        partial_ttl: float = 86400.0,
    ) -> None:
        self.root = Path(root)
        self.max_file_size = max_file_size
        self.max_name_bytes = max_name_bytes
        self.partial_ttl = partial_ttl
        self._tmp = self.root / PRIVATE_DIR / "tmp"
        self._catalog = Catalog(self.root / PRIVATE_DIR / "catalog.db")
        self._real_root = ""
        self._name_max = 255
        # transfer id -> its live Upload, or None while sweep_partials deletes it.
        self._active: dict[str, Upload | None] = {}
        # Group commit; its lock is also held by open_download from catalog
        # read to open, so a download never pairs one version's entry with
        # another version's bytes.
        self._publisher = Publisher(self._catalog, lambda name: self._check_path(name, True))
        self.reconciled = Reconciled()

    async def open(self) -> None:
        """Create ``root`` and its private directory, open the catalog,
        reconcile it with the files on disk (:func:`zfile.recovery.reconcile`;
        what changed is left in :attr:`reconciled`) and sweep expired
        partials.  Raises StoreError when any of that fails."""
        try:
            await aiofiles.os.makedirs(self._tmp, exist_ok=True)
            self._real_root = await asyncio.to_thread(os.path.realpath, self.root)
            self._name_max = await asyncio.to_thread(os.pathconf, self._real_root, "PC_NAME_MAX")
        except OSError as exc:
            raise StoreError(f"could not create the store at {self.root}: {exc.strerror or exc}") from exc
        await self._catalog.open()
        # Before any transfer: settle what a crash or a hand edit left behind.
        self.reconciled = await reconcile(self)
        await self.sweep_partials()

    async def close(self) -> None:
        """Suspend live uploads (their partials stay resumable) and close the catalog."""
        uploads = [u for u in self._active.values() if u is not None]
        await asyncio.gather(*(u.suspend() for u in uploads), return_exceptions=True)
        await self._catalog.close()
        self._real_root = ""

    def _check_open(self) -> None:
        if not self._real_root:
            raise StoreError(f"the store at {self.root} is not open")

    def _check_path(self, name: str, for_write: bool) -> Path:
        """Return root/name, raising BadName when its parent resolves outside
        the root or into the private directory, or (for_write) when the path
        is a symlink or directory or a file blocks a needed directory.  Runs
        twice for every file stored (before the write and before the rename),
        so it makes as few system calls as the checks allow."""
        path = self.root / name
        parent = os.path.realpath(path.parent)
        root = self._real_root
        private = os.path.join(root, PRIVATE_DIR)
        if not (parent == root or parent.startswith(root + os.sep)) or (
            parent == private or parent.startswith(private + os.sep)
        ):
            raise BadName(f"{quote_name(name)} resolves outside the store through a symbolic link")
        if not for_write:
            return path
        if any(len(part.encode()) > self._name_max for part in name.split("/")):
            raise BadName(f"{quote_name(name)} has a component longer than {self._name_max} bytes")
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = 0
        except NotADirectoryError:
            raise BadName(f"{quote_name(name)} needs a directory where the store holds a file") from None
        if stat.S_ISLNK(mode):
            raise BadName(f"{quote_name(name)} is a symbolic link in the store")
        if stat.S_ISDIR(mode):
            raise BadName(f"{quote_name(name)} is a directory in the store")
        ancestor = parent
        while True:
            try:
                if not stat.S_ISDIR(os.stat(ancestor).st_mode):
                    raise BadName(f"{quote_name(name)} needs a directory where the store holds a file")
                break
            except FileNotFoundError:
                ancestor = os.path.dirname(ancestor)
        return path

    async def _resolve(self, name: str, for_write: bool) -> Path:
        try:
            return await asyncio.to_thread(self._check_path, name, for_write)
        except OSError as exc:
            raise store_error(exc, name, "inspect the path of") from exc

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
        final = await self._resolve(name, True)
        if not clobber and (
            await self._catalog.get(name) is not None or await asyncio.to_thread(os.path.lexists, final)
        ):
            raise self._exists(name)
        transfer = transfer_id(name, size, mtime_ns)
        state = _state(name, size, mtime_ns, mode, algo, peer)
        held = await asyncio.to_thread(probe_partial, self._tmp, transfer, state) if resume else 0
        if size - held > 0:
            await asyncio.to_thread(self._check_space, name, size - held)
        upload = self._claim(transfer, state, clobber, hasher)
        try:
            await upload._prepare(resume)
        except BaseException:
            # Kept: a resumable partial is worth more than the disk it holds until the sweep.
            await upload._release(keep=True)
            raise
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
        results: list[Entry | ZfileError | None] = [None] * len(files)
        claimed: list[tuple[int, Upload, PutFile, bool]] = []
        try:
            for k, f in enumerate(files):
                # The checks of _begin that need no disk; the rest run in commit_wholes' worker hop.
                try:
                    hasher = self._admit(f.name, f.size, algo)
                    listed = not f.clobber and await self._catalog.get(f.name) is not None
                    state = _state(f.name, f.size, f.mtime_ns, f.mode, algo, peer)
                    upload = self._claim(transfer_id(f.name, f.size, f.mtime_ns), state, f.clobber, hasher)
                except ZfileError as exc:
                    results[k] = exc
                    continue
                claimed.append((k, upload, f, listed))
            committed = await commit_wholes([(u, f.data, f.digest, listed) for _, u, f, listed in claimed])
            for (k, *_), result in zip(claimed, committed, strict=True):
                results[k] = result
        finally:
            for _, upload, *_ in claimed:
                if upload._live:
                    await upload.abort()
        return results  # type: ignore[return-value]

    def _check_inline(self, name: str, size: int, clobber: bool, listed: bool) -> Path:
        """The disk checks of :meth:`_begin` for an inline PUT, in its order
        (path, existing name, free space); run in the write's worker thread."""
        try:
            final = self._check_path(name, True)
            if not clobber and (listed or os.path.lexists(final)):
                raise self._exists(name)
        except OSError as exc:
            raise store_error(exc, name, "inspect the path of") from exc
        if size:
            self._check_space(name, size)
        return final

    def _admit(self, name: str, size: int, algo: str) -> digests.Hasher:
        """The checks of an upload that need no disk, in order: store open,
        name (BadName), algorithm (bad-request), size negative (bad-request)
        or over ``max_file_size`` (TooLarge).  Returns a fresh hasher."""
        self._check_open()
        check_name(name, self.max_name_bytes)
        hasher = digests.new_hasher(algo)
        if size < 0:
            raise ZfileError(f"the size of {quote_name(name)} is negative ({size} bytes)", code=ErrorCode.BAD_REQUEST)
        if size > self.max_file_size:
            raise TooLarge(f"{quote_name(name)} is {size} bytes; the store accepts at most {self.max_file_size} bytes")
        return hasher

    @staticmethod
    def _exists(name: str) -> Exists:
        return Exists(f"{quote_name(name)} already exists in the store")

    def _check_space(self, name: str, need: int) -> None:
        """Raise NoSpace when the store's disk has fewer than ``need`` bytes
        free for unprivileged writers (statvfs f_bavail); blocks, so callers
        run it in a worker thread."""
        try:
            fs = os.statvfs(self.root)
        except OSError as exc:
            raise store_error(exc, name, "measure free space for") from exc
        if (free := fs.f_bavail * fs.f_frsize) < need:
            raise NoSpace(f"{quote_name(name)} needs {need} more bytes; the store's disk has {free} free")

    def _claim(self, transfer: str, state: dict, clobber: bool, hasher: digests.Hasher) -> Upload:
        """Make the Upload of ``transfer`` and claim its partial, or raise
        Busy when another live upload holds it.  No await between the check
        and the claim, so a racing begin sees it."""
        if transfer in self._active:
            raise Busy(f"an upload of {quote_name(state['name'])} is already in progress")
        upload = Upload(self, transfer, state, clobber, hasher)
        self._active[transfer] = upload
        return upload

    async def lookup(self, name: str) -> Entry:
        """Return the catalog entry of ``name``; BadName or NotFound."""
        self._check_open()
        check_name(name, self.max_name_bytes)
        entry = await self._catalog.get(name)
        if entry is None:
            raise NotFound(f"{quote_name(name)} is not in the store")
        return entry

    async def open_download(self, name: str) -> Download:
        """Open ``name`` for reading.

        Raises BadName for a bad name, a path through a symlink leaving the
        root or a symlink at the name itself; NotFound when the catalog has no
        entry or the file is missing or not a regular file; StoreError for
        other failures.
        """
        self._check_open()
        check_name(name, self.max_name_bytes)
        q = quote_name(name)
        async with self._publisher.lock:
            entry = await self._catalog.get(name)
            if entry is None:
                raise NotFound(f"{q} is not in the store")
            path = await self._resolve(name, False)
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

    async def list(self, prefix: str = "", after: str = "", limit: int = 1000) -> list[Entry]:
        """Up to ``limit`` entries whose names start with ``prefix`` and sort
        after ``after``, by name.  BadName for a bad prefix or cursor."""
        self._check_open()
        check_prefix(prefix, self.max_name_bytes)
        try:
            after.encode()
        except UnicodeEncodeError:
            raise BadName(f"the cursor {quote_name(after)} cannot be encoded as UTF-8")
        return await self._catalog.list(prefix, after, limit)

    async def sweep_partials(self, now: float | None = None) -> int:
        """Delete partials (``.part`` and ``.json``) whose state file was last
        touched more than ``partial_ttl`` seconds before ``now`` (seconds since
        the epoch; default the current time) and that no live upload holds.
        Returns how many partials were deleted; StoreError when the partials'
        directory cannot be listed."""
        cutoff = (time.time() if now is None else now) - self.partial_ttl

        def stale() -> list[str]:
            touched: dict[str, float] = {}
            with os.scandir(self._tmp) as items:
                for item in items:
                    transfer, _, ext = item.name.rpartition(".")
                    if transfer and ext in ("part", "json"):
                        with contextlib.suppress(FileNotFoundError):
                            mtime = item.stat(follow_symlinks=False).st_mtime
                            if ext == "json" or transfer not in touched:  # the state file's time wins
                                touched[transfer] = mtime
            return [transfer for transfer, mtime in touched.items() if mtime < cutoff]

        try:
            transfers = await asyncio.to_thread(stale)
        except OSError as exc:
            raise StoreError(f"could not list partial uploads in {self._tmp}: {exc.strerror or exc}") from exc
        swept = 0
        for transfer in transfers:
            if transfer in self._active:
                continue
            self._active[transfer] = None  # a begin_upload racing the deletion gets Busy
            try:
                await asyncio.to_thread(unlink_all, self._tmp / f"{transfer}.part", self._tmp / f"{transfer}.json")
                swept += 1
            except OSError:
                pass  # left for the next sweep
            finally:
                del self._active[transfer]
        return swept
