"""The client's side of an upload whose size is known only at its end
(PUT-STREAM, ``zfile send -``): a pipe's bytes out as CHUNKs under the
daemon's credit.

A pipe cannot be read at an offset, nor probed for what is cached, so
:class:`PipeReader` reads it ahead in a thread of its own: while the event
loop sends one chunk, the thread fills the next buffer of a
:class:`~zfile.fileio.chunks.BufferPool` to the chunk size with
``readinto`` (one ``read(2)`` a call, straight into the buffer) and hashes
it, so a chunk costs the loop one wake-up whatever the pipe's size, and no
fresh 1 MiB allocation.  Buffers go out zero-copy and come back to the pool
once libzmq has sent them, as a file's do (:mod:`zfile.fileio.chunks`).  A
pipe's buffer is raised to one chunk where Linux allows it
(``F_SETPIPE_SZ``, fcntl(2); at most ``/proc/sys/fs/pipe-max-size``), so the
writer blocks less often.  The thread is a daemon thread: a producer that
never writes again cannot keep the process from exiting once the upload
failed.  Give it a raw file (``sys.stdin.buffer.raw``, an ``io.FileIO``)
where the process may exit while a read waits: a buffered reader holds its
lock while its read waits, and an interpreter that exits meanwhile aborts
when it flushes that reader (CPython's "could not acquire lock ... at
interpreter shutdown").  Offsets and sizes are bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import stat
import threading
from typing import BinaryIO

from zfile.client.channel import Channel, Progress
from zfile.client.stream import send_view
from zfile.fileio.chunks import BufferPool
from zfile.protocol.digest import Hasher

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", None)


def widen_pipe(source: BinaryIO, size: int) -> None:
    """Raise the buffer of the pipe ``source`` reads to ``size`` bytes where
    the system lets it (fcntl(2) ``F_SETPIPE_SZ``); nothing for a file that
    is not a pipe, and no error when refused (EPERM past the limit)."""
    if _F_SETPIPE_SZ is None:
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = source.fileno()
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, size)


def fill(source: BinaryIO, view: memoryview, hasher: Hasher) -> int:
    """Read from ``source`` into ``view`` until it is full or the source
    ends, hash what was read and return its length (short only at the end).
    OSError from the read."""
    got = 0
    readinto = getattr(source, "readinto", None)
    while got < len(view):
        if readinto is not None:
            n = readinto(view[got:])
        else:  # a file object without readinto: one copy more
            data = source.read(len(view) - got)
            n = len(data)
            view[got : got + n] = data
        if not n:
            break
        got += n
    hasher.update(view[:got])
    return got


class PipeReader:
    """Read ``source`` to its end in chunks of ``chunk`` bytes, one ahead,
    each hashed into ``hasher`` in order (module docstring).

    ``await next()`` returns ``(buffer, view)``: ``view`` holds the next
    chunk (shorter than ``chunk`` only at the end, empty past it) and is a
    slice of ``buffer``, which the caller hands back with
    ``pool.give(buffer, trackers)``.  It raises the read's ``OSError``.
    :meth:`close` stops the thread once its read returns.
    """

    def __init__(self, source: BinaryIO, chunk: int, hasher: Hasher) -> None:
        self.pool = BufferPool(chunk)
        self._source = source
        self._hasher = hasher
        self._loop = asyncio.get_running_loop()
        self._asks: queue.SimpleQueue[tuple[memoryview, asyncio.Future[int]] | None] = queue.SimpleQueue()
        self._ahead: tuple[bytearray, asyncio.Future[int]] | None = None
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="zfile-pipe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (ask := self._asks.get()) is not None:
            view, done = ask
            try:
                n = fill(self._source, view, self._hasher)
            except BaseException as exc:  # handed to the loop, which raises it
                self._settle(done, None, exc)
                return
            self._settle(done, n, None)
            if n < len(view):
                return  # the end: nothing more to read

    def _settle(self, done: asyncio.Future[int], n: int | None, exc: BaseException | None) -> None:
        def settle() -> None:
            if done.done():  # its awaiter was cancelled
                return
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(n)  # type: ignore[arg-type]

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(settle)

    async def _ask(self) -> None:
        await self.pool.room()
        buf = self.pool.take()
        done: asyncio.Future[int] = self._loop.create_future()
        self._asks.put((memoryview(buf), done))
        self._ahead = (buf, done)

    async def next(self) -> tuple[bytearray, memoryview]:
        """The next chunk, read and hashed; OSError from the read."""
        if self._ended:
            buf = self.pool.take()
            return buf, memoryview(buf)[:0]
        if self._ahead is None:
            await self._ask()
        assert self._ahead is not None
        buf, done = self._ahead
        n = await done
        self._ahead = None
        if n < len(buf):
            self._ended = True
        else:
            await self._ask()  # read the next chunk while this one is sent
        return buf, memoryview(buf)[:n]

    def close(self) -> None:
        """Stop the thread after the read it may be blocked in; never raises."""
        self._ended = True
        self._asks.put(None)


async def send_pipe(channel: Channel, source: BinaryIO, chunk_size: int, hasher: Hasher, progress: Progress) -> int:
    """Send what ``source`` yields until its end as CHUNKs of at most
    ``chunk_size`` bytes, each within the credit granted, hashing every
    byte into ``hasher``; return the bytes sent.  ``channel``'s transfer is
    past the PUT-READY of a PUT-STREAM, so only CREDIT may arrive.  Raises
    OSError from the read, :meth:`Channel.next`'s and :meth:`Channel.send`'s
    errors for the daemon's answers."""
    transfer = channel.transfer
    widen_pipe(source, chunk_size)
    reader = PipeReader(source, chunk_size, hasher)
    try:
        while True:
            buf, view = await reader.next()
            if not view:
                reader.pool.give(buf)
                return transfer.offset
            trackers = await send_view(channel, view, progress)
            # libzmq owns the buffer until the tracker says it sent it.
            reader.pool.give(buf, trackers)
    finally:
        reader.close()


__all__ = ["PipeReader", "fill", "send_pipe", "widen_pipe"]
