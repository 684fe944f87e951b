"""The daemon's file store: files under a root directory, listed in a catalog.

An upload streams into ``<root>/.zfile/tmp/<transfer>.part`` (its parameters
in ``<transfer>.json``, so an interrupted upload can resume) while its digest
is computed from the same buffers.  Bytes reach the final name only through
``os.replace`` of a complete, verified, fsynced temporary file, so a reader
sees the old file or the new one, never a mixture; the catalog row follows.

``OSError`` never escapes: ENOSPC, EDQUOT and EFBIG become
:class:`~zfile.errors.NoSpace`, anything else a
:class:`~zfile.errors.StoreError` naming the file.  Sizes and offsets are
bytes, ``mtime_ns`` nanoseconds since the epoch, ages and TTLs seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
import os
import stat
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os
import blake3

from . import digest as digests
from .catalog import Catalog
from .errors import (
    BadName,
    Busy,
    ErrorCode,
    Exists,
    IntegrityError,
    NoSpace,
    NotFound,
    StoreError,
    TooLarge,
    ZfileError,
)
from .events import Buffer, Entry
from .names import PRIVATE_DIR, check_name, check_prefix, quote_name
from .recovery import Reconciled, reconcile
from .writeback import Writeback

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})
# A peer decides permission bits, not setuid/setgid/sticky on the daemon's disk.
_MODE_MASK = 0o777


def transfer_id(name: str, size: int, mtime_ns: int) -> str:
    """Stable id of the partial for this (name, size, mtime_ns): 32 hex digits."""
    return blake3.blake3(f"{name}\0{size}\0{mtime_ns}".encode()).digest()[:16].hex()


def _os_error(exc: OSError, name: str, doing: str) -> StoreError:
    if exc.errno in _NO_SPACE:
        return NoSpace(f"no space left on the store's disk while writing {quote_name(name)}")
    return StoreError(f"could not {doing} {quote_name(name)}: {exc.strerror or exc}")


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


async def _uninterrupted(cleanup: Coroutine[Any, Any, None]) -> None:
    """Await ``cleanup`` to its end even if the awaiting task is cancelled
    meanwhile, then raise that cancellation."""
    task = asyncio.ensure_future(cleanup)
    cancelled = False
    while True:
        try:
            await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _open_nofollow(path: str, flags: int) -> int:
    # O_NONBLOCK: opening a FIFO planted under a stored name must not hang a thread.
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


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
        # Held from os.replace to the catalog write, and by open_download from
        # catalog read to open, so a download never pairs one version's entry
        # with another version's bytes.
        self._publish = asyncio.Lock()
        # Commits waiting for the next batch, and the task publishing batches
        # (group commit, see _publish_entry).
        self._to_publish: list[tuple[Upload, Entry, asyncio.Future[None]]] = []
        self._publisher: asyncio.Task[None] | None = None
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
        is a symlink or directory or a file blocks a needed directory."""
        path = self.root / name
        parent = os.path.realpath(path.parent)
        private = os.path.join(self._real_root, PRIVATE_DIR)
        q = quote_name(name)
        if (
            os.path.commonpath([parent, self._real_root]) != self._real_root
            or os.path.commonpath([parent, private]) == private
        ):
            raise BadName(f"{q} resolves outside the store through a symbolic link")
        if not for_write:
            return path
        if any(len(part.encode()) > self._name_max for part in name.split("/")):
            raise BadName(f"{q} has a component longer than {self._name_max} bytes")
        if path.is_symlink():
            raise BadName(f"{q} is a symbolic link in the store")
        if path.is_dir():
            raise BadName(f"{q} is a directory in the store")
        ancestor = parent
        while not os.path.lexists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):
            raise BadName(f"{q} needs a directory where the store holds a file")
        return path

    async def _resolve(self, name: str, for_write: bool) -> Path:
        try:
            return await asyncio.to_thread(self._check_path, name, for_write)
        except OSError as exc:
            raise _os_error(exc, name, "inspect the path of") from exc

    def _probe_partial(self, transfer: str, state: dict[str, object]) -> int:
        """Bytes a matching partial already holds (at most size), else 0."""
        try:
            saved = json.loads((self._tmp / f"{transfer}.json").read_text())
            length = os.stat(self._tmp / f"{transfer}.part").st_size
        except (OSError, ValueError):
            return 0
        keys = ("name", "size", "mtime_ns", "algo")
        if not isinstance(saved, dict) or any(saved.get(k) != state[k] for k in keys):
            return 0
        return min(length, int(state["size"]))  # type: ignore[call-overload]

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
        prepare: bool = True,
    ) -> Upload:
        self._check_open()
        check_name(name, self.max_name_bytes)
        hasher = digests.new_hasher(algo)
        q = quote_name(name)
        if size < 0:
            raise ZfileError(f"the size of {q} is negative ({size} bytes)", code=ErrorCode.BAD_REQUEST)
        if size > self.max_file_size:
            raise TooLarge(f"{q} is {size} bytes; the store accepts at most {self.max_file_size} bytes")
        final = await self._resolve(name, True)
        if not clobber and (
            await self._catalog.get(name) is not None or await asyncio.to_thread(os.path.lexists, final)
        ):
            raise Exists(f"{q} already exists in the store")
        transfer = transfer_id(name, size, mtime_ns)
        state = dict(name=name, size=size, mtime_ns=mtime_ns, mode=mode & _MODE_MASK, algo=algo, peer=peer)
        held = await asyncio.to_thread(self._probe_partial, transfer, state) if resume else 0
        if size - held > 0:
            try:
                fs = await asyncio.to_thread(os.statvfs, self.root)
            except OSError as exc:
                raise _os_error(exc, name, "measure free space for") from exc
            if (free := fs.f_bavail * fs.f_frsize) < size - held:
                raise NoSpace(f"{q} needs {size - held} more bytes; the store's disk has {free} free")
        if transfer in self._active:
            raise Busy(f"an upload of {q} is already in progress")
        upload = Upload(self, transfer, state, clobber, hasher)
        self._active[transfer] = upload  # claimed before the next await, so a racing begin sees it
        if not prepare:
            return upload
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
        upload = await self._begin(name, size, mtime_ns, mode, algo, clobber, peer, resume=False, prepare=False)
        try:
            length = memoryview(data).nbytes
            if length != size:
                raise IntegrityError(f"{quote_name(name)} was declared {size} bytes but {length} arrived")
            return await upload._commit_whole(data, digest)
        finally:
            if upload._live:
                await upload.abort()

    async def _publish_entry(self, upload: Upload, entry: Entry) -> None:
        """Move ``upload``'s sealed partial to its final name and record ``entry``.

        Group commit: commits that arrive while a batch is being published
        wait and go together in the next one.  A batch is renamed into place
        in one worker-thread hop, each directory it touched is fsynced once
        after all its renames, and the catalog records it in one transaction
        (one journal flush); every file was fsynced on its own before.  All
        under ``_publish``, so a download still never pairs one version's
        entry with another's bytes.  Raises, for this upload only, what
        :meth:`_check_path` and :meth:`Upload._install` raise (BadName,
        Exists, OSError), or StoreError when the catalog write fails.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._to_publish.append((upload, entry, done))
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.create_task(self._publish_batches(), name="zfile-publish")
        await done

    async def _publish_batches(self) -> None:
        while self._to_publish:
            batch: list[tuple[Upload, Entry, asyncio.Future[None]]] = []
            try:
                async with self._publish:
                    # Taken under the lock: a commit cancelled while it waited is not published.
                    batch = [item for item in self._to_publish if not item[2].done()]
                    self._to_publish = []
                    outcomes = await asyncio.to_thread(self._install_batch, [(u, e.name) for u, e, _ in batch])
                    installed = [e for (_, e, _), exc in zip(batch, outcomes, strict=True) if exc is None]
                    try:
                        await self._catalog.put_many(installed)
                    except StoreError as exc:
                        outcomes = [exc if o is None else o for o in outcomes]
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

    def _install_batch(self, batch: list[tuple[Upload, str]]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        dirs: set[Path] = set()
        for upload, name in batch:
            try:
                final = self._check_path(name, True)
            except OSError as exc:
                outcomes.append(_os_error(exc, name, "inspect the path of"))
                continue
            except ZfileError as exc:
                outcomes.append(exc)
                continue
            try:
                dirs |= upload._install(final, sync_dirs=False)
                outcomes.append(None)
            except (OSError, ZfileError) as exc:
                outcomes.append(exc)
        try:
            for directory in dirs:
                _fsync_dir(directory)
        except OSError as exc:
            outcomes = [exc if o is None else o for o in outcomes]
        return outcomes

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
        async with self._publish:
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
                raise _os_error(exc, name, "open") from exc
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
                await asyncio.to_thread(_unlink, self._tmp / f"{transfer}.part", self._tmp / f"{transfer}.json")
                swept += 1
            except OSError:
                pass  # left for the next sweep
            finally:
                del self._active[transfer]
        return swept


class Upload:
    """One upload in progress; made by :meth:`Store.begin_upload`.

    ``transfer`` is the stable id of its partial, ``offset`` the number of
    bytes held so far (where the next write starts), ``size`` the declared
    length in bytes.  Once :meth:`commit`, :meth:`suspend` or :meth:`abort`
    has returned or raised, the upload is finished and releases its partial.
    """

    def __init__(self, store: Store, transfer: str, state: dict, clobber: bool, hasher: digests.Hasher):
        self._store = store
        self.transfer = transfer
        self.name: str = state["name"]
        self.size: int = state["size"]
        self.mtime_ns: int = state["mtime_ns"]
        self.mode: int = state["mode"]
        self.algo: str = state["algo"]
        self.peer: str = state["peer"]
        self.clobber = clobber
        self.offset = 0
        self._state = state
        self._hasher = hasher
        self._part = store._tmp / f"{transfer}.part"
        self._state_path = store._tmp / f"{transfer}.json"
        self._file = None
        self._live = True
        # Set while bytes may be on disk that the hasher has not seen (a write
        # was cancelled mid-flight); committing then could publish unverified bytes.
        self._torn = False
        self._lock = asyncio.Lock()
        self._writeback = Writeback()

    async def _prepare(self, resume: bool) -> None:
        try:
            offset = 0
            if resume:
                offset = await asyncio.to_thread(self._store._probe_partial, self.transfer, self._state)
            if offset:
                await asyncio.to_thread(os.truncate, self._part, offset)
                prime = digests.hash_file_prefix
                try:
                    self._hasher = await asyncio.to_thread(prime, str(self._part), offset, self.algo)
                except EOFError:  # the partial shrank under us: start afresh
                    offset = 0
            if offset:
                self._file = await aiofiles.open(self._part, "ab")
            else:
                # State file goes first so a crash can never pair it with another upload's bytes.
                await asyncio.to_thread(self._state_path.unlink, missing_ok=True)
                self._file = await aiofiles.open(self._part, "wb")
                async with aiofiles.open(self._state_path, "w") as f:
                    await f.write(json.dumps({**self._state, "created": time.time()}))
        except OSError as exc:
            raise _os_error(exc, self.name, "prepare the partial file of") from exc
        self.offset = offset
        self._writeback = Writeback(offset)

    def _check_writable(self) -> None:
        if not self._live:
            raise StoreError(f"the upload of {quote_name(self.name)} is already finished")
        if self._torn:
            raise StoreError(f"a write to {quote_name(self.name)} was interrupted; suspend it and resume")

    async def _write_raw(self, data: Buffer) -> None:
        await self._file.write(data)
        # Overlap the disk writes with the transfer so commit's fsync has only the tail left.
        end = self.offset + memoryview(data).nbytes
        if self._writeback.due(end):
            await asyncio.to_thread(self._writeback.kick, self._file.fileno(), end)

    async def write(self, offset: int, data: Buffer) -> None:
        """Append ``data`` at byte ``offset``, which must equal :attr:`offset`.

        Raises IntegrityError (upload stays live) when ``offset`` is not the
        current end or the data would run past ``size``; NoSpace when the disk
        is full (the partial is deleted: the upload cannot complete);
        StoreError for other write failures (the partial is kept for resume)
        or when the upload is finished.
        """
        async with self._lock:
            self._check_writable()
            length = memoryview(data).nbytes
            q = quote_name(self.name)
            if offset != self.offset:
                raise IntegrityError(f"data for {q} starts at byte {offset}; the next byte is {self.offset}")
            if offset + length > self.size:
                raise IntegrityError(f"data for {q} runs to byte {offset + length}, past its {self.size} bytes")
            if not length:
                return
            self._torn = True
            try:
                await self._write_raw(data)
            except OSError as exc:
                err = _os_error(exc, self.name, "write the partial file of")
                await self._release(keep=not isinstance(err, NoSpace))
                raise err from exc
            self._hasher.update(data)
            self.offset += length
            self._torn = False

    async def commit(self, digest: bytes) -> Entry:
        """Verify, publish under the final name, record, and return the entry.

        Raises IntegrityError when fewer than ``size`` bytes were written
        (partial kept for resume) or ``digest`` differs from the digest of the
        bytes written (partial deleted); BadName or Exists when the final path
        became unusable meanwhile; NoSpace / StoreError on OS failures.
        """
        async with self._lock:
            self._check_writable()
            q = quote_name(self.name)
            if self.offset != self.size:
                await self.suspend()
                raise IntegrityError(f"the upload of {q} ended after {self.offset} of {self.size} bytes")
            actual = self._hasher.digest()
            if not hmac.compare_digest(actual, bytes(digest)):
                await self.abort()
                raise IntegrityError(f"the digest of {q} does not match the bytes received; discarded them")
            store = self._store
            try:
                await self._file.flush()
                await asyncio.to_thread(self._write_intent, actual)
                await asyncio.to_thread(self._seal, self._file.fileno())
                await self._file.close()
                self._file = None
                fields = (self.name, self.size, self.mtime_ns, self.mode, self.algo, actual)
                entry = Entry(*fields, received=time.time(), id=uuid.uuid4().hex, peer=self.peer)
                await store._publish_entry(self, entry)
            except OSError as exc:
                err = _os_error(exc, self.name, "store")
                await self._release(keep=not isinstance(err, NoSpace))
                raise err from exc
            except BaseException:
                await self._release(keep=True)
                raise
            await self._release(keep=False)
            return entry

    async def _commit_whole(self, data: Buffer, digest: bytes) -> Entry:
        """Commit a whole file held in memory (an inline PUT) with the checks
        and steps of :meth:`write` then :meth:`commit`, but in one worker-thread
        hop (write, intent, fsync) before the group publish instead of a dozen:
        small files are bound by per-file overhead.  Errors as :meth:`commit`;
        the caller aborts the upload on any of them."""
        self._hasher.update(data)
        actual = self._hasher.digest()
        if not hmac.compare_digest(actual, bytes(digest)):
            raise IntegrityError(f"the digest of {quote_name(self.name)} does not match the bytes received")
        try:
            await asyncio.to_thread(self._write_sealed, data, actual)
            self.offset = self.size
            fields = (self.name, self.size, self.mtime_ns, self.mode, self.algo, actual)
            entry = Entry(*fields, received=time.time(), id=uuid.uuid4().hex, peer=self.peer)
            await self._store._publish_entry(self, entry)
        except OSError as exc:
            raise _os_error(exc, self.name, "store") from exc
        await self._release(keep=False)
        return entry

    def _write_sealed(self, data: Buffer, digest: bytes) -> None:
        # _prepare's and commit's order: no stale state file beside new bytes;
        # the intent before the fsync, and both before the rename.
        self._state_path.unlink(missing_ok=True)
        fd = os.open(self._part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(fd, view) :]
            self._write_intent(digest)
            self._seal(fd)
        finally:
            os.close(fd)

    def _write_intent(self, digest: bytes) -> None:
        # The verified digest goes into the state file (a commit intent) before
        # the rename, so a crash between rename and catalog write is finished at
        # the next start (zfile.recovery).  Rewritten in place: a state file
        # torn by a crash here only costs the partial its resume.
        self._state_path.write_text(json.dumps({**self._state, "created": time.time(), "digest": digest.hex()}))

    def _seal(self, fd: int) -> None:
        os.fchmod(fd, self.mode)
        os.utime(fd if os.utime in os.supports_fd else self._part, ns=(self.mtime_ns, self.mtime_ns))
        os.fsync(fd)

    def _install(self, final: Path, sync_dirs: bool = True) -> set[Path]:
        """Move the sealed partial to ``final``; return the directories whose
        entries changed, after fsyncing them unless ``sync_dirs`` is False
        (the caller then fsyncs them, once for a whole batch)."""
        created = []
        parent = final.parent
        while not parent.is_dir():
            created.append(parent)
            parent = parent.parent
        os.makedirs(final.parent, exist_ok=True)
        if self.clobber:
            os.replace(self._part, final)
        else:
            # link() refuses an existing name atomically, unlike an exists-check then replace().
            try:
                os.link(self._part, final)
                os.unlink(self._part)
            except FileExistsError:
                raise Exists(f"{quote_name(self.name)} already exists in the store") from None
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS or os.path.lexists(final):
                    raise
                os.replace(self._part, final)
        dirs = {final.parent, *(d.parent for d in created)}
        if sync_dirs:
            for directory in dirs:
                _fsync_dir(directory)
        return dirs

    async def suspend(self) -> None:
        """Keep the bytes written so far for a later :meth:`Store.begin_upload`
        to resume: flush and fsync the partial and release it.  A no-op when
        finished.  NoSpace (partial deleted) or StoreError if the flush fails.
        Runs to the end even when the caller is cancelled meanwhile (the
        cancellation is raised after): a suspend cut short would leave the
        partial claimed, and every resume of it busy, until a restart."""
        if self._live:
            await _uninterrupted(self._suspend())

    async def _suspend(self) -> None:
        if not self._live:
            return
        try:
            if self._file is not None:
                await self._file.flush()
                await asyncio.to_thread(os.fsync, self._file.fileno())
            # The TTL of sweep_partials counts from the last activity, not from creation.
            await asyncio.to_thread(os.utime, self._state_path)
        except OSError as exc:
            err = _os_error(exc, self.name, "save the partial file of")
            await self._release(keep=not isinstance(err, NoSpace))
            raise err from exc
        await self._release(keep=True)

    async def abort(self) -> None:
        """Delete the partial and its state file; a no-op when finished."""
        if self._live:
            await self._release(keep=False)

    async def _release(self, *, keep: bool) -> None:
        # Best effort: whatever cannot be closed or removed here, sweep_partials removes later.
        self._live = False
        try:
            if self._file is not None:
                file, self._file = self._file, None
                with contextlib.suppress(OSError):
                    await file.close()
            if not keep:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(_unlink, self._part, self._state_path)
        finally:
            if self._store._active.get(self.transfer) is self:
                del self._store._active[self.transfer]


class Download:
    """An open stored file; ``entry`` is its catalog entry."""

    def __init__(self, entry: Entry, file) -> None:
        self.entry = entry
        self._file = file
        self._lock = asyncio.Lock()  # a seek and its read must not interleave with another read's

    async def read(self, offset: int, length: int) -> bytes:
        """Return at most ``length`` bytes from byte ``offset`` of the file;
        b"" at or past the end.  ZfileError (bad-request) for a negative
        argument, StoreError when closed or when reading fails."""
        q = quote_name(self.entry.name)
        if offset < 0 or length < 0:
            raise ZfileError(f"cannot read {length} bytes at offset {offset} of {q}", code=ErrorCode.BAD_REQUEST)
        async with self._lock:
            if self._file is None:
                raise StoreError(f"the download of {q} is closed")
            try:
                await self._file.seek(offset)
                return await self._file.read(length)
            except OSError as exc:
                raise _os_error(exc, self.entry.name, "read") from exc

    async def close(self) -> None:
        """Close the file; a no-op when already closed."""
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                await file.close()
