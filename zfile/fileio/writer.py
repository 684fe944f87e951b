"""A file's chunks written, hashed and fsynced by one thread, behind the event loop.

A download's receiver used to take one worker-thread hop per chunk: the loop
handed the chunk to the executor, waited for the write, then went back to the
socket.  Each hop is a thread wake-up and a loop wake-up (an eventfd write,
an epoll return, a future and its callbacks), and while the write ran the
loop took no chunk.  :class:`ChunkWriter` instead runs one thread for the
whole file: the loop queues each chunk (:meth:`ChunkWriter.feed`, which never
waits) and goes back to the socket; the thread writes it with ``pwrite(2)``
straight from the frame's buffer, hashes it, starts writeback every step
(:class:`zfile.fileio.writeback.Writeback`) and, at the end, fsyncs.  The
thread wakes the loop only when the written offset reaches the mark a waiter
set (:meth:`ChunkWriter.reach`): a receiver that grants credit as bytes are
written waits there only when the sender has no credit left, once per
credit step rather than once per chunk.

What is queued and not yet written is bounded by the credit the receiver
granted, not here.  Offsets are bytes from the file's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading

from zfile.fileio.writeback import Writeback
from zfile.protocol.digest import Hasher
from zfile.protocol.events import Buffer

_FINISH = object()  # write what is queued, fsync, stop
_ABORT = object()  # stop now; what is queued is dropped


class ChunkWriter:
    """Write ``fd`` from byte ``start`` in a thread of its own.

    Feed it the chunks in file order with :meth:`feed`; :attr:`written` is
    the offset up to which they are written and hashed into ``hasher``.
    :meth:`finish` waits for the rest, fsyncs ``fd`` and returns;
    :meth:`abort` stops the thread without waiting.  An ``OSError`` from a
    write or the fsync stops the thread and is raised by the next
    :meth:`feed`, :meth:`reach` or :meth:`finish`.  :attr:`done` is a future
    of the event loop that completes when the thread no longer uses ``fd``
    (for :func:`zfile.fileio.chunks.close_after`).  Create and use it from
    one event loop's thread.
    """

    def __init__(self, fd: int, start: int, hasher: Hasher, writeback: Writeback) -> None:
        self.fd = fd
        self._hasher = hasher
        self._writeback = writeback
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        #: Bytes from the file's start that are written and hashed.
        self.written = start
        self._queued = start  # offset just past the last chunk fed
        self._error: OSError | None = None
        self._mark: int | None = None  # wake the waiter once written reaches it
        self._waiter: asyncio.Future[None] | None = None
        #: Done once the thread has stopped using ``fd``.
        self.done: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="zfile-writer", daemon=True)
        self._thread.start()

    def feed(self, data: Buffer) -> None:
        """Queue ``data`` (bytes-like; not mutated until written) to be
        written just past the last chunk fed.  Never waits; raises the
        thread's OSError if it failed."""
        self._raise()
        view = memoryview(data).cast("B")
        if view.nbytes:
            self._queue.put((view, self._queued))
            self._queued += view.nbytes

    async def reach(self, offset: int) -> None:
        """Wait until :attr:`written` is at least ``offset`` (capped at what
        was fed) or the thread failed (then raise its OSError)."""
        offset = min(offset, self._queued)
        while self.written < offset:
            self._raise()
            if self.done.done():
                break
            waiter = self._waiter = self._loop.create_future()
            # The thread reads the mark after it moves `written`: set the mark,
            # then look again, so that one of the two sees the other.
            self._mark = offset
            if self.written < offset and self._error is None:
                await waiter
            self._mark = self._waiter = None
        self._raise()

    async def finish(self) -> None:
        """Wait until everything fed is written, then fsync; OSError.  A
        cancelled caller leaves the thread to finish on its own."""
        self._raise()
        self._queue.put(_FINISH)
        await asyncio.shield(self.done)
        self._raise()

    def abort(self) -> None:
        """Stop the thread after the write in progress, if any; the chunks
        still queued are dropped.  Idempotent; never raises."""
        self._queue.put(_ABORT)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            self._write_all()
        except OSError as exc:
            self._error = exc
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._stopped)

    def _write_all(self) -> None:
        get, fd, hasher, writeback = self._queue.get, self.fd, self._hasher, self._writeback
        while True:
            item = get()
            if item is _ABORT:
                return
            if item is _FINISH:
                os.fsync(fd)
                return
            view, offset = item  # type: ignore[misc]
            end = offset + view.nbytes
            rest = view
            while rest:
                n = os.pwrite(fd, rest, offset)
                rest = rest[n:]
                offset += n
            hasher.update(view)
            del view, rest, item  # the frame's buffer goes back to libzmq now
            if writeback.due(end):
                writeback.kick(fd, end)
            self.written = end
            mark = self._mark
            if mark is not None and end >= mark:
                self._mark = None
                self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _stopped(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        self._wake()


__all__ = ["ChunkWriter"]
