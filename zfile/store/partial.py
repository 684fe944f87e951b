"""An upload in progress: its partial file, state file, resume and commit.

An upload streams into ``<root>/.zfile/tmp/<transfer>.part``, whole pages
with ``O_DIRECT`` (:mod:`zfile.fileio.direct`), its parameters in
``<transfer>.json`` so that it can resume, and its digest is computed from
the same buffers.  A commit verifies the digest, records it
in the state file (the commit intent :mod:`zfile.store.recovery` finishes
after a crash), fsyncs the partial and hands it to the store's group commit
(:class:`zfile.store.group_commit.Publisher`), which moves it to its final name
with ``os.replace`` (or ``link`` when it must not clobber) and writes the
catalog row.  A whole file sent inside its PUT or a PUT-MANY
(:mod:`zfile.store.wholes`) writes no state file: its commit intent is a
catalog row, recorded by the group commit before the rename.  An upload
whose size is known only at its end (PUT-STREAM) is a :class:`StreamUpload`:
the same partial, with no state file until its commit.

:func:`transfer_id` names a partial, :func:`probe_partial` says how much of
one can be resumed, and :class:`Upload` (:meth:`LocalStore.begin_upload
<zfile.store.local.LocalStore.begin_upload>`; :class:`StreamUpload`,
``begin_stream``) writes, commits, suspends or aborts it.  An upload finds its paths and checks in the store's
:class:`~zfile.store.layout.Layout` and releases its claim
(:class:`~zfile.store.claims.Claims`) when it finishes.  ``OSError`` becomes
NoSpace or StoreError (:func:`zfile.store.fs.store_error`).  Sizes and
offsets are bytes, ``mtime_ns`` nanoseconds since the epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import blake3

from zfile.errors import IntegrityError, NoSpace, StoreError, TooLarge
from zfile.fileio.direct import DirectAppender
from zfile.fileio.hashing import hash_file_prefix
from zfile.fileio.writeback import UPLOADS, Writeback, drop
from zfile.protocol import digest as digests
from zfile.protocol.events import Buffer, Entry
from zfile.protocol.names import quote_name
from zfile.store.base import StreamHandle, UploadHandle
from zfile.store.claims import Claims
from zfile.store.cleanup import uninterrupted
from zfile.store.fs import fsync_dir, store_error, unlink_all
from zfile.store.group_commit import Publisher
from zfile.store.layout import Layout, exists_error

_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def transfer_id(name: str, size: int, mtime_ns: int) -> str:
    """Stable id of the partial for this (name, size, mtime_ns): 32 hex digits."""
    return blake3.blake3(f"{name}\0{size}\0{mtime_ns}".encode()).digest()[:16].hex()


def probe_partial(tmp: Path, transfer: str, state: dict[str, object]) -> int:
    """Bytes a matching partial in ``tmp`` already holds (at most size), else 0."""
    try:
        saved = json.loads((tmp / f"{transfer}.json").read_text())
        length = os.stat(tmp / f"{transfer}.part").st_size
    except (OSError, ValueError):
        return 0
    keys = ("name", "size", "mtime_ns", "algo")
    if not isinstance(saved, dict) or any(saved.get(k) != state[k] for k in keys):
        return 0
    return min(length, int(state["size"]))  # type: ignore[call-overload]


class Upload(UploadHandle):
    """One upload in progress; made by :meth:`LocalStore.begin_upload`.

    ``transfer`` is the stable id of its partial, ``offset`` the number of
    bytes held so far (where the next write starts), ``size`` the declared
    length in bytes.  Once :meth:`commit`, :meth:`suspend` or :meth:`abort`
    has returned or raised, the upload is finished and releases its partial
    and its claim in ``claims``.  ``state`` is what its state file records;
    ``layout`` gives its paths and checks, ``publisher`` publishes its commit.
    """

    def __init__(
        self,
        layout: Layout,
        claims: Claims[Upload],
        publisher: Publisher,
        transfer: str,
        state: dict,
        clobber: bool,
        hasher: digests.Hasher,
    ) -> None:
        self._layout = layout
        self._claims = claims
        self._publisher = publisher
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
        self._part = layout.part_path(transfer)
        self._state_path = layout.state_path(transfer)
        # The partial's descriptor, written straight (never buffered); None
        # when closed.
        self._fd: int | None = None
        self._live = True
        #: Whether the partial stayed on disk when the upload finished.
        self.kept = False
        #: Whether the upload ended published under its final name.
        self.published = False
        # Set while bytes may be on disk that the hasher has not seen (a write
        # was cancelled mid-flight); committing then could publish unverified bytes.
        self._torn = False
        self._lock = asyncio.Lock()
        # The last worker-thread hop on the descriptor (a write, the seal): a
        # cancelled caller does not stop it, so the descriptor is closed only
        # once it is over (_release).
        self._inflight: asyncio.Future | None = None
        self._writeback = Writeback()
        #: Writes the partial, with O_DIRECT where it can (zfile.fileio.direct); set with the descriptor.
        self._appender: DirectAppender | None = None
        #: False: its commit intent is in its state file, not the catalog.
        self.intent_in_catalog = False

    @property
    def live(self) -> bool:
        """False once the upload is finished (committed, suspended or aborted)."""
        return self._live

    async def prepare(self, resume: bool) -> None:
        """Open the partial for writing: with ``resume``, after what a
        matching partial already holds (setting :attr:`offset`), else afresh.
        On failure the upload is finished, its partial kept for a resume, and
        NoSpace or StoreError raised."""
        try:
            await self._prepare(resume)
        except BaseException:
            # Kept: a resumable partial is worth more than the disk it holds until the sweep.
            await self._release(keep=True)
            raise

    async def _prepare(self, resume: bool) -> None:
        loop = asyncio.get_running_loop()
        hop = loop.run_in_executor(None, self._open_partial, resume)
        try:
            fd, offset, hasher = await asyncio.shield(hop)
        except OSError as exc:
            raise store_error(exc, self.name, "prepare the partial file of") from exc
        except asyncio.CancelledError:
            hop.add_done_callback(_close_opened)  # the thread may still open it
            raise
        self._fd = fd
        if hasher is not None:
            self._hasher = hasher
        self.offset = offset
        # Steps shrink while many uploads run, so together they keep little in the page cache.
        self._writeback = UPLOADS.writer(offset)
        self._appender = DirectAppender(fd, offset, self._writeback)

    def _open_partial(self, resume: bool) -> tuple[int, int, digests.Hasher | None]:
        """Open the partial, in one worker-thread hop: with ``resume`` after
        what a matching partial holds, else afresh with a new state file.
        Returns (descriptor, offset, the hasher primed with the bytes kept,
        or None when starting afresh).  OSError."""
        offset = probe_partial(self._layout.tmp, self.transfer, self._state) if resume else 0
        hasher = None
        if offset:
            os.truncate(self._part, offset)
            try:
                hasher = hash_file_prefix(str(self._part), offset, self.algo)
            except EOFError:  # the partial shrank under us: start afresh
                offset, hasher = 0, None
        if offset:
            return os.open(self._part, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC), offset, hasher
        # State file goes first so a crash can never pair it with another upload's bytes.
        self._state_path.unlink(missing_ok=True)
        fd = os.open(self._part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            self._state_path.write_text(json.dumps({**self._state, "created": time.time()}))
        except BaseException:
            os.close(fd)
            raise
        return fd, 0, None

    def _check_writable(self) -> None:
        if not self._live:
            raise StoreError(f"the upload of {quote_name(self.name)} is already finished")
        if self._torn:
            raise StoreError(f"a write to {quote_name(self.name)} was interrupted; suspend it and resume")

    async def _write_raw(self, data: Buffer) -> None:
        """Write ``data`` at the end of the partial and hash it, in one
        worker-thread hop: whole pages with O_DIRECT, less than a page kept
        for the next write or the fsync (:class:`DirectAppender`), or
        through the page cache with writeback started when due where
        O_DIRECT is refused."""
        assert self._appender is not None
        loop = asyncio.get_running_loop()
        self._inflight = loop.run_in_executor(None, self._appender.append, data, self._hasher)
        # Shielded: a cancelled caller must leave the hop's future pending, not
        # cancelled, so that _release can tell the thread is still writing.
        await asyncio.shield(self._inflight)

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
                err = store_error(exc, self.name, "write the partial file of")
                await self._release(keep=not isinstance(err, NoSpace))
                raise err from exc
            self.offset += length
            self._torn = False

    def written_digest(self) -> bytes:
        """The digest of the partial's bytes so far (a resumed prefix included)."""
        return self._hasher.digest()

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
            try:
                await self._hop(self._seal, actual)
                fd, self._fd = self._fd, None
                os.close(fd)  # cheap: fsynced, nothing left to write back
                fields = (self.name, self.size, self.mtime_ns, self.mode, self.algo, actual)
                entry = Entry(*fields, received=time.time(), id=uuid.uuid4().hex, peer=self.peer)
                (failure,) = await self._publisher.publish([(self, entry)])
                if failure is not None:
                    raise failure
            except OSError as exc:
                err = store_error(exc, self.name, "store")
                await self._release(keep=not isinstance(err, NoSpace))
                raise err from exc
            except BaseException:
                await self._release(keep=True)
                raise
            await self._release(keep=False, published=True)
            return entry

    async def _hop(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)``, which uses the descriptor, in a worker-thread
        hop that :meth:`_release` waits for before it closes the descriptor;
        after the hop before it, should a cancelled write still run."""
        prior = self._inflight
        if prior is not None and not prior.done():
            await asyncio.wait([prior])
        self._inflight = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        # Shielded: a cancelled caller must leave the hop's future pending (see _write_raw).
        await asyncio.shield(self._inflight)

    def _write_intent(self, digest: bytes) -> None:
        # The verified digest goes into the state file (a commit intent) before
        # the rename, so a crash between rename and catalog write is finished at
        # the next start (zfile.store.recovery).  Rewritten in place: a state file
        # torn by a crash here only costs the partial its resume.
        self._state_path.write_text(json.dumps({**self._state, "created": time.time(), "digest": digest.hex()}))

    def _stamp(self, fd: int) -> None:
        os.fchmod(fd, self.mode)
        os.utime(fd if os.utime in os.supports_fd else self._part, ns=(self.mtime_ns, self.mtime_ns))

    def _seal(self, digest: bytes) -> None:
        # One hop for the commit's file work: the intent, then mode, mtime and
        # the fsync that makes the bytes durable before any rename.
        self._write_intent(digest)
        fd = self._fd
        self._flush()
        self._stamp(fd)
        os.fsync(fd)
        drop(fd)  # clean now: the next uploads' writes reuse these pages

    def publish_to(self, name: str, check_path: Callable[[str], Path]) -> set[Path | int]:
        """The group commit's step for this upload: check the final path
        again (the tree may have changed since the upload began), then
        :meth:`install` without the directory fsyncs, which the group
        commit does once for its batch.  BadName, Exists; OSError."""
        try:
            final = check_path(name)
        except OSError as exc:
            raise store_error(exc, name, "inspect the path of") from exc
        return set(self.install(final, sync_dirs=False))

    def install(self, final: Path, sync_dirs: bool = True) -> set[Path]:
        """Move the sealed partial to ``final``; return the directories whose
        entries changed, after fsyncing them unless ``sync_dirs`` is False
        (the caller then fsyncs them, once for a whole batch).  Blocking: the
        group commit runs it in its worker-thread hop.  Exists when the upload
        must not replace a file that is there; OSError."""
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
                raise exists_error(self.name) from None
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS or os.path.lexists(final):
                    raise
                os.replace(self._part, final)
        dirs = {final.parent, *(d.parent for d in created)}
        if sync_dirs:
            for directory in dirs:
                fsync_dir(directory)
        return dirs

    async def suspend(self) -> None:
        """Keep the bytes written so far for a later :meth:`Store.begin_upload`
        to resume: flush and fsync the partial and release it.  A no-op when
        finished.  NoSpace (partial deleted) or StoreError if the flush fails.
        Runs to the end even when the caller is cancelled meanwhile (the
        cancellation is raised after): a suspend cut short would leave the
        partial claimed, and every resume of it busy, until a restart."""
        if self._live:
            await uninterrupted(self._suspend())

    async def _suspend(self) -> None:
        if not self._live:
            return
        try:
            await self._hop(self._save)
        except OSError as exc:
            err = store_error(exc, self.name, "save the partial file of")
            await self._release(keep=not isinstance(err, NoSpace))
            raise err from exc
        await self._release(keep=True)

    def _flush(self) -> None:
        if self._appender is not None:
            self._appender.flush()

    def _save(self) -> None:
        if self._fd is not None:
            self._flush()
            os.fsync(self._fd)
        # The TTL of sweep_partials counts from the last activity, not from creation.
        os.utime(self._state_path)

    async def abort(self) -> None:
        """Delete the partial and its state file; a no-op when finished."""
        if self._live:
            await self._release(keep=False)

    async def _release(self, *, keep: bool, published: bool = False) -> None:
        # Best effort: whatever cannot be closed or removed here, sweep_partials removes later.
        self._live = False
        self.kept = keep
        self.published = published
        self._writeback.close()
        try:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                if self._inflight is not None and not self._inflight.done():
                    # Closed under a write still running, the descriptor's number
                    # could be reused by another file before that write lands.
                    await asyncio.wait([self._inflight])
                with contextlib.suppress(OSError):
                    os.close(fd)
            if self._appender is not None:
                self._appender.close()  # no write runs now: the commit's seal or the wait above ended the last
            if not keep:
                # A published partial has its final name: only the state file is left.
                paths = (self._state_path,) if published else (self._part, self._state_path)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(unlink_all, *paths)
        finally:
            self._claims.release(self.transfer, self)


def _close_opened(hop: asyncio.Future) -> None:
    """Close the descriptor an abandoned :meth:`Upload._open_partial` hop opened."""
    if not hop.cancelled() and hop.exception() is None:
        with contextlib.suppress(OSError):
            os.close(hop.result()[0])


class StreamUpload(Upload, StreamHandle):
    """An upload whose size is known only at its end (PUT-STREAM); made by
    :meth:`LocalStore.begin_stream <zfile.store.local.LocalStore.begin_stream>`.

    Its bytes go to ``<transfer>.part`` as an :class:`Upload`'s do, written
    and hashed in one worker-thread hop a chunk, with early writeback, so
    they are written once.  Nothing can resume it (its bytes came from a
    pipe), so it writes no state file before its commit, and a crash
    mid-stream leaves a partial without one, which the next start deletes
    (:mod:`zfile.store.recovery`).  ``limit`` is the most bytes it takes.
    :meth:`commit` fixes the size, then verifies, records the commit intent
    and publishes as an :class:`Upload` does; :meth:`suspend` (the store's
    close) drops the bytes, as :meth:`abort` does.
    """

    def __init__(
        self,
        layout: Layout,
        claims: Claims[Upload],
        publisher: Publisher,
        transfer: str,
        state: dict,
        clobber: bool,
        hasher: digests.Hasher,
        limit: int,
    ) -> None:
        # Until the commit the declared size is the limit: no write can pass it.
        super().__init__(layout, claims, publisher, transfer, {**state, "size": limit}, clobber, hasher)
        self.limit = limit
        # Set once the commit begins: from then on the state file holds a
        # commit intent, which is kept where an Upload's would be.
        self._committing = False

    async def prepare(self, resume: bool = False) -> None:
        """Create the partial (``resume`` is ignored: a stream starts afresh).
        NoSpace or StoreError, the upload finished, when it cannot be made."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        try:
            self._fd = await asyncio.to_thread(os.open, self._part, flags, 0o666)
        except OSError as exc:
            await self._release(keep=False)
            raise store_error(exc, self.name, "prepare the partial file of") from exc
        self._writeback = UPLOADS.writer(0)
        self._appender = DirectAppender(self._fd, 0, self._writeback)

    async def write(self, offset: int, data: Buffer) -> None:
        """Append ``data`` at byte ``offset`` (:meth:`Upload.write`); TooLarge,
        the upload still live, when it would pass :attr:`limit` bytes."""
        if offset + memoryview(data).nbytes > self.limit:
            raise TooLarge(f"{quote_name(self.name)} passed {self.limit} bytes, the most the store accepts")
        await super().write(offset, data)

    async def commit(self, digest: bytes, size: int | None = None) -> Entry:
        """Publish the ``size`` bytes written, checked against ``digest``
        (:meth:`Upload.commit`).  IntegrityError, the bytes dropped, when
        ``size`` is not the number written or the digest differs."""
        self._check_writable()
        if size != self.offset:
            await self.abort()
            raise IntegrityError(
                f"the stream of {quote_name(self.name)} ended after {self.offset} bytes, "
                f"but its end says {size}; discarded them"
            )
        self.size = self._state["size"] = size
        self._committing = True
        return await super().commit(digest)

    async def suspend(self) -> None:
        """Drop the bytes, as :meth:`abort` does: a stream cannot resume."""
        await self.abort()

    async def abort(self) -> None:
        """Delete the partial; a no-op when finished; runs to its end even
        when the caller is cancelled meanwhile."""
        if self._live:
            await uninterrupted(self._release(keep=False))

    async def _release(self, *, keep: bool, published: bool = False) -> None:
        # Before the commit there is nothing a later upload could use.
        await super()._release(keep=keep and self._committing, published=published)
