"""The client library: upload, download and list over one DEALER socket.

``async with Client(config) as c:`` then :meth:`Client.put`,
:meth:`Client.get`, :meth:`Client.list`, or the tree helpers in
:mod:`zfile.client.tree`.  Many transfers share the socket at once, each on
its own :class:`~zfile.client.channel.Channel`, fed by one receive task.

Uploads stream chunks under the daemon's credit and hash while reading;
downloads are written to a temp file beside the destination
(``.NAME.zfile-part``), hashed while writing, checked for size and digest,
then renamed into place (magic-wormhole's and rsync's way).  An interrupted
download keeps its temp file and resumes from it next time.  Each resumed
transfer is logged at INFO on the ``zfile.client`` logger: ``resuming NAME at
N bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from zfile.client import stream as streams
from zfile.client.channel import Channel, Progress, error_code, no_progress
from zfile.client.config import ClientConfig
from zfile.client.ops import FileOps, Removal
from zfile.client.pacing import TokenBucket
from zfile.client.partfiles import part_paths, resume_point, write_state
from zfile.client.smallfiles import read_wholes
from zfile.client.smallget import write_wholes
from zfile.errors import (
    ErrorCode,
    IntegrityError,
    LocalFileError,
    RemoteError,
    RemoteProtocolError,
    TransportError,
    ZfileError,
)
from zfile.fileio.dirs import make_parents
from zfile.fileio.hashing import hash_file_prefix
from zfile.protocol.digest import DEFAULT_ALGO, new_hasher
from zfile.protocol.events import (
    Entry,
    Event,
    Get,
    GetMany,
    GetManyOk,
    GetMeta,
    ListPage,
    ListRequest,
    Put,
    PutEnd,
    PutFile,
    PutMany,
    PutManyOk,
    PutOk,
    PutReady,
)
from zfile.protocol.limits import mtime_outside
from zfile.protocol.machine import MAX_MANY_BYTES
from zfile.transport.dealer import ClientSocket
from zfile.transport.endpoint import DEFAULT_ENDPOINT, parse_endpoint

# A resumed transfer is logged at INFO on this logger (the CLI shows it on stderr).
log = logging.getLogger("zfile.client")


@dataclass(frozen=True, slots=True)
class Result:
    """A finished transfer: the stored ``name``, ``size`` in bytes, whole-file
    ``digest``, and for downloads the local ``path`` written."""

    name: str
    size: int
    digest: bytes
    path: Path | None = None


class Client(FileOps):
    """A connection to one zfile daemon, configured by a :class:`ClientConfig`
    (or an endpoint string, short for ``ClientConfig(endpoint)``).

    Use it as ``async with Client(config) as c:``, connected and used inside
    one running event loop; ``endpoint`` is the ZeroMQ endpoint it reaches.
    A put or get answered ``busy`` is retried as the config's ``busy_*``
    fields say.  With ``config.curve`` a daemon that refuses this client's
    key shows as :class:`~zfile.errors.AuthFailed` where a silent daemon
    would show as :class:`PeerTimeout`; an endpoint where nothing listens,
    or a connection lost mid-transfer, as :class:`PeerUnreachable`.  Raises :class:`EndpointError` for
    an endpoint it cannot parse.
    """

    def __init__(self, config: ClientConfig | str = DEFAULT_ENDPOINT) -> None:
        if isinstance(config, str):
            config = ClientConfig(config)
        self.config = config
        self.endpoint = parse_endpoint(config.endpoint)
        self._sock: ClientSocket | None = None
        self._recv_task: asyncio.Task[None] | None = None
        self._channels: dict[int, Channel] = {}
        self._ids = itertools.count(1)
        self._failure: TransportError | None = None
        #: Paces every transfer of this client to ``config.bwlimit`` (None: no limit).
        self.pacer = TokenBucket(config.bwlimit) if config.bwlimit else None
        # Paced, a download's credit is about a quarter second of the rate, so
        # the daemon cannot send far ahead of the pace in one burst.
        self._window = config.window if self.pacer is None else max(64 << 10, min(config.window, config.bwlimit // 4))

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect the socket (inside the running loop, pyzmq #1760); raises
        :class:`TransportError`.  A daemon that is not there shows only on
        the first transfer: as :class:`PeerUnreachable` at once when the
        connection is refused (or the ipc socket is missing), as
        :class:`PeerTimeout` when the host does not answer at all."""
        self._sock = await ClientSocket.connect(self.endpoint, curve=self.config.curve, on_down=self._link_down)
        self._recv_task = asyncio.create_task(self._receive_loop(), name="zfile-client-receive")

    async def close(self) -> None:
        """Close the socket; transfers still running raise :class:`TransportError`."""
        for channel in list(self._channels.values()):
            channel.fail(TransportError("the client was closed"))
        if self._recv_task is not None:
            self._recv_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recv_task
            self._recv_task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- plumbing ----------------------------------------------------------------

    async def _receive_loop(self) -> None:
        assert self._sock is not None
        while True:
            try:
                event: Event | BaseException = await self._sock.recv()
            except RemoteProtocolError as exc:
                if exc.transfer_id is None:
                    continue  # unattributable garbage; the waits time out if it mattered
                event = exc
                tid = exc.transfer_id
            except TransportError as exc:
                self._failure = exc
                for channel in self._channels.values():
                    channel.fail(exc)
                return
            else:
                tid = event.id
            channel = self._channels.get(tid)
            if channel is not None:
                channel.deliver(event)

    def _link_down(self, exc: TransportError) -> None:
        # The daemon's sessions belong to the lost connection: every transfer
        # in flight is over, and waiting out its timeout would only hide why.
        # Later transfers try again, on the reconnected link if there is one.
        for channel in list(self._channels.values()):
            channel.fail(exc)

    def _open(self) -> Channel:
        if self._sock is None:
            raise TransportError("the client is not connected")
        if self._failure is not None:
            raise self._failure
        channel = Channel(self._sock, next(self._ids), timeout=self.config.timeout, release=self._release)
        self._channels[channel.id] = channel
        return channel

    def channel(self) -> Channel:
        """A new transfer on this connection, for protocols built on the
        client (chain fan-out, :mod:`zfile.client.chain`); close it when done."""
        return self._open()

    def _release(self, transfer_id: int) -> None:
        self._channels.pop(transfer_id, None)

    async def _retry_busy(self, attempt: Callable[[], Awaitable[Result]]) -> Result:
        """Run ``attempt``; while the daemon answers ``busy`` (all transfer
        slots taken, shutting down, the same upload still live), run it again
        up to ``busy_retries`` times after an exponential backoff with jitter
        (``busy_backoff`` seconds doubling, at most ``busy_backoff_max``; the
        AWS "exponential backoff and jitter" policy, via tenacity).  The last
        ``busy`` is raised as :class:`RemoteError`."""
        try:
            return await attempt()
        except RemoteError as exc:
            if not _is_busy(exc) or self.config.busy_retries <= 0:
                raise
            refused = exc
        # Imported only once the daemon has said busy: a command that is never
        # refused (most) starts without it, ~6 ms sooner.
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

        config = self.config
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_busy),
            stop=stop_after_attempt(config.busy_retries + 1),
            wait=wait_exponential_jitter(
                multiplier=config.busy_backoff, max=config.busy_backoff_max, jitter=config.busy_backoff
            ),
            reraise=True,
        )
        first = True
        async for try_ in retrying:
            with try_:
                if first:  # the refusal above is the policy's first attempt: its backoff comes next
                    first = False
                    raise refused
                return await attempt()
        raise AssertionError("unreachable: tenacity reraises the last error")

    # -- upload ------------------------------------------------------------------

    async def put(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        clobber: bool = True,
        progress: Progress = no_progress,
    ) -> Result:
        """Upload the file at ``path`` as ``name`` (default: its basename).

        Resumes from the daemon's partial when one exists for the same name,
        size and mtime.  Raises :class:`LocalFileError` (cannot read, changed
        while sending), :class:`RemoteError` (the daemon refused: exists, too
        large, no space...), :class:`IntegrityError`, :class:`TransportError`.
        """
        path = Path(path)
        name = path.name if name is None else name
        try:
            st = path.stat()
        except OSError as exc:
            raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None
        if not path.is_file():
            raise LocalFileError(f"{path} is not a regular file")
        if (why := mtime_outside(st.st_mtime_ns)) is not None:
            raise LocalFileError(f"cannot send {path}: {why}")
        return await self._retry_busy(lambda: self._put_once(path, name, st, clobber, progress))

    async def _put_once(self, path: Path, name: str, st: os.stat_result, clobber: bool, progress: Progress):
        async with self._open() as channel:
            meta = dict(name=name, size=st.st_size, mtime_ns=st.st_mtime_ns, mode=st.st_mode & 0o7777)
            try:
                if st.st_size <= self.config.inline_max:
                    return await self._put_inline(channel, path, meta, clobber, progress)
                return await self._put_stream(channel, path, st, meta, clobber, progress)
            except OSError as exc:
                raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None

    async def _put_inline(self, channel: Channel, path: Path, meta: dict, clobber: bool, progress: Progress):
        # One worker-thread hop for open, read and close: a small file's cost is its hops.
        data = await asyncio.to_thread(_read_at_most, path, meta["size"] + 1)
        if len(data) != meta["size"]:
            raise LocalFileError(f"{path} changed while being sent")
        hasher = new_hasher(DEFAULT_ALGO)
        hasher.update(data)
        digest = hasher.digest()
        if self.pacer is not None:
            await self.pacer.take(len(data))
        await channel.send(Put(channel.id, algo=DEFAULT_ALGO, clobber=clobber, data=data, digest=digest, **meta))
        ok = await channel.next()
        assert isinstance(ok, PutOk)
        if ok.digest != digest:
            raise IntegrityError(f"the daemon stored {meta['name']} with another digest")
        progress(meta["size"])
        return Result(meta["name"], meta["size"], digest)

    async def put_many(
        self,
        files: Sequence[tuple[str | os.PathLike[str], str]],
        *,
        clobber: bool = True,
        progress: Progress = no_progress,
    ) -> list[Result | ZfileError]:
        """Upload small files, ``(path, name)`` pairs, in one PUT-MANY message.

        For each file in order, returns its Result or its error:
        LocalFileError when it cannot be read, RemoteError when the daemon
        refused it, IntegrityError.  A file over ``inline_max`` bytes, one past
        ``many_bytes`` in all, or one the daemon answered ``busy``, goes on
        its own through :meth:`put`.  A failure of the whole message
        (TransportError, or RemoteError after ``busy`` retries) is raised.
        """
        most = min(self.config.many_bytes, MAX_MANY_BYTES)  # a larger message would be refused whole
        read = await asyncio.to_thread(read_wholes, files, self.config.inline_max, most, clobber)
        results: list[Result | ZfileError | None] = [r if isinstance(r, ZfileError) else None for r in read]
        batch = [(k, r) for k, r in enumerate(read) if isinstance(r, PutFile)]
        if batch:
            reply = await self._retry_busy(lambda: self._put_many_once(tuple(f for _, f in batch)))
            for (k, f), answer in zip(batch, reply.results, strict=True):
                if answer.ok and answer.digest not in (None, f.digest):
                    results[k] = IntegrityError(f"the daemon stored {f.name} with another digest")
                elif answer.ok:
                    results[k] = Result(f.name, f.size, f.digest)
                    progress(f.size)
                elif answer.code != ErrorCode.BUSY.value:
                    results[k] = RemoteError(answer.message, code=error_code(answer.code))
        for k, result in enumerate(results):
            if result is None:  # too large now, or busy: on its own, with its own retries
                try:
                    results[k] = await self.put(files[k][0], files[k][1], clobber=clobber, progress=progress)
                except ZfileError as exc:
                    results[k] = exc
        return results  # type: ignore[return-value]

    async def _put_many_once(self, files: tuple[PutFile, ...]) -> PutManyOk:
        if self.pacer is not None:
            await self.pacer.take(sum(f.size for f in files))
        async with self._open() as channel:
            await channel.send(PutMany(channel.id, DEFAULT_ALGO, files))
            reply = await channel.next()
            assert isinstance(reply, PutManyOk)
            return reply

    async def _put_stream(self, channel: Channel, path: Path, st: os.stat_result, meta, clobber, progress):
        await channel.send(Put(channel.id, algo=DEFAULT_ALGO, clobber=clobber, **meta))
        ready = await channel.next()
        assert isinstance(ready, PutReady)
        if ready.offset:
            log.info("resuming %s at %d bytes", meta["name"], ready.offset)
            hasher = await asyncio.to_thread(hash_file_prefix, str(path), ready.offset, DEFAULT_ALGO)
            progress(ready.offset)
        else:
            hasher = new_hasher(DEFAULT_ALGO)
        await streams.send_file(channel, path, st, self.config.chunk_size, hasher, progress, self.pacer)
        digest = hasher.digest()
        await channel.send(PutEnd(channel.id, digest))
        while True:
            event = await channel.next()
            if isinstance(event, PutOk):
                break
        if event.digest != digest:
            raise IntegrityError(f"the daemon stored {meta['name']} with another digest")
        return Result(meta["name"], meta["size"], digest)

    # -- download ----------------------------------------------------------------

    async def get(self, name: str, dest: str | os.PathLike[str], *, progress: Progress = no_progress) -> Result:
        """Download ``name`` to the local path ``dest``.

        Bytes go to ``.DEST.zfile-part`` beside ``dest``; size and digest are
        checked, mode and mtime set, then the temp file is renamed to ``dest``.
        A temp file left by an interrupted download of the same source is
        resumed.  Raises :class:`RemoteError` (not found...),
        :class:`IntegrityError` (the temp file is then discarded),
        :class:`LocalFileError`, :class:`TransportError`.
        """
        dest = Path(dest)
        part, state = part_paths(dest)
        try:
            make_parents(dest)
            _not_a_directory(dest)
            offset, digest = resume_point(part, state, name)
        except OSError as exc:
            raise LocalFileError.writing(dest, exc) from None
        return await self._retry_busy(lambda: self._get_once(name, dest, part, state, offset, digest, progress))

    async def _get_once(self, name: str, dest: Path, part: Path, state: Path, offset: int, digest, progress):
        async with self._open() as channel:
            try:
                await channel.send(Get(channel.id, name, self._window, offset, digest))
                meta = await channel.next()
                assert isinstance(meta, GetMeta)
                return await self._receive_file(channel, meta, dest, part, state, progress)
            except OSError as exc:
                raise LocalFileError.writing(dest, exc) from None

    async def _receive_file(self, channel: Channel, meta: GetMeta, dest, part: Path, state: Path, progress):
        if meta.offset:
            log.info("resuming %s at %d bytes", meta.name, meta.offset)
            hasher = await asyncio.to_thread(hash_file_prefix, str(part), meta.offset, meta.algo)
            progress(meta.offset)
        else:
            hasher = new_hasher(meta.algo)
            write_state(state, meta.name, meta.size, meta.digest)
        config = self.config
        chunk = config.chunk_size if self.pacer is None else min(config.chunk_size, self._window // 4)
        await streams.receive_file(channel, meta, part, self._window, chunk, hasher, progress, self.pacer)
        if hasher.digest() != meta.digest:
            # Never splice: a temp file that fails verification is discarded.
            part.unlink(missing_ok=True)
            state.unlink(missing_ok=True)
            raise IntegrityError(f"{meta.name}: digest mismatch after download; the partial was discarded")
        os.chmod(part, meta.mode)
        os.utime(part, ns=(meta.mtime_ns, meta.mtime_ns))
        os.replace(part, dest)
        state.unlink(missing_ok=True)
        return Result(meta.name, meta.size, meta.digest, dest)

    async def get_many(
        self, files: Sequence[tuple[str, str | os.PathLike[str]]], *, progress: Progress = no_progress
    ) -> list[Result | ZfileError]:
        """Download small files, ``(name, dest)`` pairs, with one GET-MANY.

        For each file in order, returns its Result or its error: RemoteError
        when the daemon refused it (not found, bad name), IntegrityError when
        its bytes do not match the daemon's digest (nothing is written),
        LocalFileError.  Each file goes through a temp file, fsync and atomic
        rename as in :meth:`get`.  A file that did not fit in the reply's
        ``many_bytes`` (it grew since it was listed) or that the daemon
        answered ``busy`` goes on its own through :meth:`get`.  A failure of
        the whole message (TransportError, or RemoteError after ``busy``
        retries) is raised.
        """
        pairs = [(name, Path(dest)) for name, dest in files]
        reply = await self._retry_busy(lambda: self._get_many_once(tuple(name for name, _ in pairs)))
        results: list[Result | ZfileError | None] = [None] * len(pairs)
        whole = [(k, got) for k, got in enumerate(reply.files) if got.ok]
        for k, got in enumerate(reply.files):
            if not got.ok and got.code not in (ErrorCode.TOO_LARGE.value, ErrorCode.BUSY.value):
                results[k] = RemoteError(got.message, code=error_code(got.code))
        jobs = [(got, pairs[k][1], *part_paths(pairs[k][1])) for k, got in whole]
        for (k, got), error in zip(whole, await asyncio.to_thread(write_wholes, jobs), strict=True):
            results[k] = error or Result(pairs[k][0], got.size, got.digest or b"", pairs[k][1])
            if error is None:
                progress(got.size)
        for k, result in enumerate(results):
            if result is None:  # too large for the batch now, or busy: on its own, with its own retries
                try:
                    results[k] = await self.get(pairs[k][0], pairs[k][1], progress=progress)
                except ZfileError as exc:
                    results[k] = exc
        return results  # type: ignore[return-value]

    async def _get_many_once(self, names: tuple[str, ...]) -> GetManyOk:
        async with self._open() as channel:
            await channel.send(GetMany(channel.id, names, min(self.config.many_bytes, MAX_MANY_BYTES)))
            reply = await channel.next()
            assert isinstance(reply, GetManyOk)
            return reply

    # -- listing -----------------------------------------------------------------

    async def list(self, prefix: str = "", *, page_size: int = 1000) -> AsyncIterator[Entry]:
        """Yield catalog entries whose names start with ``prefix``, by name,
        fetched ``page_size`` at a time."""
        async with self._open() as channel:
            request = ListRequest(channel.id, prefix, "", page_size)
            while True:
                await channel.send(request)
                page = await channel.next()
                assert isinstance(page, ListPage)
                for entry in page.entries:
                    yield entry
                if not page.more or not page.entries:
                    return
                request = ListRequest(channel.id, prefix, page.entries[-1].name, page_size)


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, RemoteError) and exc.code is ErrorCode.BUSY


def _read_at_most(path: Path, limit: int) -> bytes:
    """Up to ``limit`` bytes from the start of the file at ``path``; OSError."""
    with open(path, "rb", buffering=0) as f:
        return f.read(limit)


def _not_a_directory(dest: Path) -> None:
    """IsADirectoryError when ``dest`` is a directory (not a symbolic link
    to one, which the final rename replaces): found before a byte moves,
    not by that rename once the whole file has."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(dest).st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(dest))


__all__ = ["Client", "ClientConfig", "Progress", "Removal", "Result"]
