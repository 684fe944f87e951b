"""The client's side of the file operations: remove, move, stat, check and
ping (docs/protocol.md, "File operations"), reading a stored file as a stream
of chunks (a GET whose bytes go to the caller, not to a file), and
uploading a stream whose size is known only at its end (PUT-STREAM).

:class:`FileOps` is a base of :class:`zfile.client.Client`; its methods
use the client's channels and its retries of ``busy`` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from zfile.client.channel import Progress, error_code, no_progress
from zfile.client.pipe import send_pipe
from zfile.errors import ErrorCode, IntegrityError, LocalFileError, RemoteError, ZfileError
from zfile.protocol.codec import MAX_CHECK_FILES, MAX_HEADER_BYTES, MAX_MANY_FILES, MAX_REMOVE_PAGE
from zfile.protocol.credit import CreditWindow
from zfile.protocol.digest import DEFAULT_ALGO, new_hasher
from zfile.protocol.events import (
    CHECK_SAME,
    Buffer,
    Check,
    CheckOk,
    Chunk,
    Credit,
    Entry,
    Event,
    FileResult,
    Get,
    GetMeta,
    Move,
    MoveOk,
    Ping,
    Pong,
    PutEnd,
    PutOk,
    PutReady,
    PutStream,
    Remove,
    RemoveOk,
    Stat,
    StatOk,
)

if TYPE_CHECKING:
    from zfile.client.channel import Channel
    from zfile.client.config import ClientConfig


#: Files one REMOVE asks the daemon to remove (of the protocol's
#: MAX_MANY_FILES names or MAX_REMOVE_PAGE entries): few enough that a
#: loaded daemon answers well within the client's timeout.
REMOVE_BATCH = min(256, MAX_MANY_FILES, MAX_REMOVE_PAGE)
#: Bytes of names one CHECK carries at most: its frame 0 also holds a size
#: and an mtime per name (9 bytes each) and msgpack's headers.
_CHECK_NAME_BYTES = MAX_HEADER_BYTES - (64 << 10) - 32 * MAX_CHECK_FILES


@dataclass(frozen=True, slots=True)
class Removal:
    """What became of one stored file a remove named or found: ``digest``
    is the removed file's BLAKE3 digest (for a dry run, that of the file that
    would be removed), ``error`` why it was not removed (a RemoteError whose
    ``code`` is ``not-found``, ``bad-name``, ...), None when it was."""

    name: str
    digest: bytes | None = None
    error: ZfileError | None = None

    @property
    def status(self) -> str:
        """``removed``, ``not found`` or ``error``."""
        if self.error is None:
            return "removed"
        return "not found" if self.error.code is ErrorCode.NOT_FOUND else "error"


@dataclass(frozen=True, slots=True)
class Status:
    """A daemon's answer to :meth:`FileOps.ping`: zfile ``version``,
    ``protocol`` version, ``uptime`` (seconds), ``free`` bytes for new files
    (None: the store has no such limit, as an object store), ``transfers``
    running, ``curve`` (CurveZMQ on), ``rtt`` the round trip of the
    ping in seconds, measured by the client, and ``read_only`` (the daemon
    refuses every change; False from a daemon that predates the field)."""

    version: str
    protocol: int
    uptime: float
    free: int | None
    transfers: int
    curve: bool
    rtt: float
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Streamed:
    """An upload of a stream the daemon committed: the stored ``name``,
    its ``size`` in bytes and BLAKE3 ``digest``."""

    name: str
    size: int
    digest: bytes


class FileOps:
    """Remove (and the other file operations) for :class:`zfile.client.Client`,
    which provides ``_open`` (a new channel), ``_retry_busy`` and ``list``."""

    if TYPE_CHECKING:
        config: ClientConfig
        _open: Callable[[], Channel]
        _retry_busy: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
        list: Callable[..., AsyncIterator[Entry]]

    async def remove(
        self, names: Iterable[str] = (), *, prefix: str | None = None, dry_run: bool = False
    ) -> list[Removal]:
        """Remove the stored files ``names``, then, with ``prefix``, every
        file whose name starts with it (``"datasets/2025/"``: give the
        trailing slash, or ``datasets/2025x`` goes too).  Returns one
        :class:`Removal` per name given, in order, then one per file found
        under the prefix, by name; a name that is not stored is a Removal
        with a ``not-found`` error, and never stops the others.

        Each removal is atomic for readers: on a local store a download
        already under way finishes with the old bytes (docs/s3.md says what
        an object store promises).  ``dry_run`` removes nothing and returns
        what would be removed now.  Raises RemoteError for a request the
        daemon refuses whole (a bad prefix; ``busy`` after the retries) and
        TransportError.
        """
        names = list(names)
        if prefix == "":
            raise ValueError("an empty prefix would remove every file; give a prefix such as 'logs/'")
        out: list[Removal] = []
        for start in range(0, len(names), REMOVE_BATCH):
            batch = tuple(names[start : start + REMOVE_BATCH])
            if dry_run:
                out.extend([await self._would_remove(name) for name in batch])
                continue
            reply = await self._retry_busy(lambda batch=batch: self._remove_once(Remove(0, names=batch)))
            out.extend(_removal(name, r) for name, r in zip(batch, reply.results, strict=True))
        if prefix is not None:
            out.extend(await self._remove_tree(prefix, dry_run))
        return out

    async def move(self, name: str, to: str, *, clobber: bool = False) -> Entry:
        """Rename the stored file ``name`` to ``to`` on the daemon and return
        its entry under the new name.  On a local store it is one step (a
        reader sees the old name or the new); on S3 a copy then a delete
        (docs/s3.md).  Raises RemoteError: ``exists`` when ``to`` is stored
        and ``clobber`` is off, ``not-found``, ``bad-request`` for a bad name
        (the rules of uploads) or equal names."""
        reply = await self._retry_busy(lambda: self._ask(lambda tid: Move(tid, name, to, clobber)))
        assert isinstance(reply, MoveOk)
        return reply.entry

    async def stat(self, name: str) -> Entry:
        """The catalog entry of the stored file ``name``: size (bytes),
        mtime_ns, mode, algo and digest, received (seconds since the epoch),
        peer.  Raises RemoteError (``not-found``, ``bad-request``)."""
        reply = await self._retry_busy(lambda: self._ask(lambda tid: Stat(tid, name)))
        assert isinstance(reply, StatOk)
        return reply.entry

    async def check(
        self,
        names: Sequence[str],
        sizes: Sequence[int],
        mtimes_ns: Sequence[int] | None = None,
        *,
        algo: str = DEFAULT_ALGO,
    ) -> list[tuple[int, bytes | None]]:
        """Ask the daemon which of these files it holds: rsync's quick check,
        made by the daemon from its catalog (docs/protocol.md, "CHECK").
        ``names`` (stored names), ``sizes`` (bytes) and ``mtimes_ns``
        (nanoseconds since the epoch; None compares sizes only, as ``-c``
        wants) are parallel.

        Returns, for each name in order, ``(verdict, digest)``: the verdict
        :data:`~zfile.protocol.events.CHECK_ABSENT` (not stored, or another
        size), ``CHECK_SAME`` or ``CHECK_DIFFERS`` (the same size, another
        mtime), and for ``CHECK_SAME`` the stored file's digest in ``algo``
        (None otherwise, or when it is stored under another algorithm).
        Sent as CHECK requests of at most MAX_CHECK_FILES names that fit a
        frame 0, all at once.  Raises RemoteError and TransportError.
        """
        if not names:
            return []
        spans: list[tuple[int, int]] = []
        if len(names) <= MAX_CHECK_FILES and 4 * sum(map(len, names)) <= _CHECK_NAME_BYTES:
            spans.append((0, len(names)))  # UTF-8 takes at most 4 bytes a character: one request holds them
        else:
            start = room = 0
            for i, name in enumerate(names):
                need = len(name) if name.isascii() else len(name.encode("utf-8", "surrogatepass"))
                if i > start and (i - start == MAX_CHECK_FILES or room + need > _CHECK_NAME_BYTES):
                    spans.append((start, i))
                    start, room = i, 0
                room += need
            spans.append((start, len(names)))

        async def ask(lo: int, hi: int) -> list[tuple[int, bytes | None]]:
            times = None if mtimes_ns is None else tuple(mtimes_ns[lo:hi])
            part = (tuple(names[lo:hi]), tuple(sizes[lo:hi]), times)
            reply = await self._retry_busy(lambda: self._ask(lambda tid: Check(tid, algo, *part)))
            assert isinstance(reply, CheckOk)
            found = iter(reply.digests)
            return [(v, (next(found) or None) if v == CHECK_SAME else None) for v in reply.same]

        out: list[tuple[int, bytes | None]] = []
        for part in await asyncio.gather(*(ask(lo, hi) for lo, hi in spans)):
            out += part
        return out

    async def ping(self) -> Status:
        """Ask the daemon how it is (:class:`Status`); a daemon busy with
        every transfer slot taken still answers.  Raises TransportError
        (PeerTimeout when nothing answers)."""
        began = time.monotonic()
        reply = await self._ask(lambda tid: Ping(tid))
        rtt = time.monotonic() - began
        assert isinstance(reply, Pong)
        return Status(
            reply.version, reply.protocol, reply.uptime, reply.free, reply.transfers, reply.curve, rtt, reply.read_only
        )

    async def read(self, name: str) -> AsyncIterator[Buffer]:
        """Yield the bytes of the stored file ``name``, chunk by chunk (each
        at most the daemon's chunk size, 1 MiB by default), from its start to
        its end; hashed as they pass and checked against the stored digest
        after the last, which raises IntegrityError on a mismatch: the
        caller has had every byte by then and must discard what it kept.

        Memory is bounded: credit for more is granted only as the caller
        takes chunks, so at most ``config.window`` bytes wait unread.
        Raises RemoteError (``not-found``...) before the first chunk, and
        TransportError.  Leaving the loop early cancels the download.
        """
        channel, meta = await self._retry_busy(lambda: self._start_get(name))
        try:
            transfer = channel.transfer
            hasher = new_hasher(meta.algo)
            credit = CreditWindow(0, meta.size, self.config.window, self.config.chunk_size)
            while transfer.offset < meta.size:
                chunk = await channel.next()
                assert isinstance(chunk, Chunk)
                hasher.update(chunk.data)
                yield chunk.data
                if step := credit.grant(transfer.offset):
                    await channel.send(Credit(transfer.id, step))
        finally:
            await channel.close()
        if hasher.digest() != meta.digest:
            raise IntegrityError(
                f"{meta.name}: the {meta.size} bytes received do not match the stored {meta.algo} digest"
            )

    async def cat(self, name: str, out: BinaryIO) -> int:
        """Write the stored file ``name`` to the binary file ``out`` as it
        arrives and return the bytes written (:meth:`read`: IntegrityError
        after the last byte when the digest differs; bytes already written
        stay written).  OSError from ``out`` (BrokenPipeError when a pipe's
        reader left) ends the download."""
        size = 0
        async with contextlib.aclosing(self.read(name)) as chunks:
            async for data in chunks:
                out.write(data)
                size += len(data)
        out.flush()
        return size

    async def _start_get(self, name: str) -> tuple[Channel, GetMeta]:
        channel = self._open()
        try:
            await channel.send(Get(channel.id, name, self.config.window))
            meta = await channel.next()
        except BaseException:
            await channel.close()
            raise
        assert isinstance(meta, GetMeta)
        return channel, meta

    async def put_stream(
        self,
        source: BinaryIO,
        name: str,
        *,
        clobber: bool = True,
        mode: int = 0o644,
        progress: Progress = no_progress,
    ) -> Streamed:
        """Upload what ``source`` (a binary file object such as
        ``sys.stdin.buffer``) yields until its end, as ``name``, when its
        size is known only at that end (PUT-STREAM, docs/protocol.md).

        Bytes go under the daemon's credit and are hashed as they are read,
        a chunk ahead of the sends (:mod:`zfile.client.pipe`);
        the size and digest travel in PUT-END and the daemon stores the file
        atomically once both check out.  ``mode`` is the stored permission
        bits, the mtime the time the upload began.  There is no resume: an
        interrupted stream is gone.  Raises RemoteError (exists, too large,
        no space), IntegrityError, LocalFileError when ``source`` cannot be
        read, TransportError.
        """
        async with self._open() as channel:
            put = PutStream(channel.id, name, time.time_ns(), mode & 0o7777, DEFAULT_ALGO, clobber)
            await channel.send(put)
            ready = await channel.next()
            assert isinstance(ready, PutReady)
            hasher = new_hasher(DEFAULT_ALGO)
            try:
                size = await send_pipe(channel, source, self.config.chunk_size, hasher, progress)
            except OSError as exc:
                raise LocalFileError(f"cannot read the stream for {name}: {exc.strerror or exc}") from None
            digest = hasher.digest()
            await channel.send(PutEnd(channel.id, digest, size))
            while not isinstance(event := await channel.next(), PutOk):
                pass  # credit granted before the end reached the daemon
        if event.digest != digest:
            raise IntegrityError(f"the daemon stored {name} with another digest")
        return Streamed(name, size, digest)

    async def _ask(self, make: Callable[[int], Event]) -> Event:
        """Send the request ``make(transfer id)`` on a new channel and return its answer."""
        async with self._open() as channel:
            await channel.send(make(channel.id))
            return await channel.next()

    async def _remove_tree(self, prefix: str, dry_run: bool) -> list[Removal]:
        out: list[Removal] = []
        if dry_run:
            async for entry in self.list(prefix):
                out.append(Removal(entry.name, entry.digest))
            return out
        after = ""
        while True:
            req = Remove(0, prefix=prefix, after=after, limit=REMOVE_BATCH)
            reply = await self._retry_busy(lambda req=req: self._remove_once(req))
            out.extend(_removal(name, r) for name, r in zip(reply.names, reply.results, strict=True))
            if not reply.more or not reply.names:
                return out
            # Past the last name tried: one that could not be removed is not tried again.
            after = reply.names[-1]

    async def _remove_once(self, template: Remove) -> RemoveOk:
        async with self._open() as channel:
            req = Remove(channel.id, template.names, template.prefix, template.after, template.limit)
            await channel.send(req)
            reply = await channel.next()
            assert isinstance(reply, RemoveOk)
            return reply

    async def _would_remove(self, name: str) -> Removal:
        async with contextlib.aclosing(self.list(name, page_size=1)) as entries:
            async for entry in entries:
                if entry.name == name:  # a name sorts first among those it is a prefix of
                    return Removal(name, entry.digest)
                break
        return Removal(name, error=RemoteError(f"{name!r} is not in the store", code=ErrorCode.NOT_FOUND))


def _removal(name: str, result: FileResult) -> Removal:
    if result.ok:
        return Removal(name, result.digest)
    return Removal(name, error=RemoteError(result.message, code=error_code(result.code)))


__all__ = ["FileOps", "Removal", "Status", "Streamed"]
