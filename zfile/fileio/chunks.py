"""Moving a large file's bytes between disk and socket, with few thread hops.

Both ends stream a large file in chunks (1 MiB by default), and at a few
hundred megabytes per second the Python work per chunk counts as much as the
bytes; on a 2-CPU machine each worker-thread hop (a thread wake-up, then a
loop wake-up) costs about a tenth of a millisecond of CPU.  So:

- :class:`ChunkReader` (sender: the client's upload, the daemon's download)
  reads a chunk into a reused buffer and hashes it.  A chunk the page cache
  holds is read in the event loop itself with ``preadv2(2)`` and
  ``RWF_NOWAIT``, which refuses rather than waits on a disk; only a chunk
  that must come from the disk is read (and hashed) in a worker-thread hop,
  so the loop never waits on a disk.  The kernel's sequential read-ahead
  brings the next chunks in meanwhile;
- the receivers write elsewhere: the daemon's upload with ``O_DIRECT``
  (:mod:`zfile.fileio.direct`), the client's download in a writer thread
  of its own (:mod:`zfile.fileio.writer`).

Chunks go out zero-copy (``copy=False``): libzmq holds the buffer until its
I/O thread has written it to the connection.  :class:`BufferPool` therefore
reuses a buffer only once the send's tracker (pyzmq's ``MessageTracker``,
anything with a ``done`` attribute) says libzmq has released it, and
allocates a new one meanwhile; reusing buffers spares the kernel from handing
fresh zeroed pages to every chunk.  Offsets and sizes are bytes from the
file's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from zfile.protocol.digest import Hasher

_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", None)
_O_DIRECT = getattr(os, "O_DIRECT", 0)
#: Alignment of a direct read's offset, length and buffer address: a page,
#: a multiple of every logical block size Linux file systems use.
DIRECT_ALIGN = 4096
#: Chunks a reader without a hasher reads from the disk ahead of the one
#: its caller waits for, once its chunks come by direct reads: the kernel
#: reads ahead for buffered reads only, and one 1 MiB direct read at a time
#: left the disk idle between them (a daemon's download of a file the page
#: cache had dropped spent most of its time waiting on the next read).
READ_AHEAD = 2


def aligned_window(buf: bytearray, size: int) -> memoryview:
    """The ``size`` bytes of ``buf`` that start at its first page-aligned
    address (``buf`` has :data:`DIRECT_ALIGN` bytes to spare for that)."""
    skip = -ctypes.addressof(ctypes.c_char.from_buffer(buf)) % DIRECT_ALIGN
    return memoryview(buf)[skip : skip + size]


class Tracker(Protocol):
    """What a zero-copy send returns: ``done`` once libzmq released the buffer."""

    @property
    def done(self) -> bool: ...


class ShortRead(EOFError):
    """The file ended before the offset the reader was told to read up to."""


class BufferPool:
    """Buffers of ``size`` bytes for chunks handed to zero-copy sends.

    :meth:`take` returns a buffer no send holds any more, or a new one;
    :meth:`give` hands a buffer back with the trackers of the sends that
    carry (slices of) it.  Buffers come back in the order they were sent and
    libzmq sends one connection's messages in order, so only the oldest
    needs checking.  A tracker turns done only when pyzmq's garbage-collector
    thread gets to it, which on a busy machine lags behind libzmq by tens of
    chunks at times.  So that such a lag does not grow the process (glibc
    keeps what a burst of allocations took), a sender awaits :meth:`room`
    before it takes: that waits, yielding the event loop and with it the
    GIL the garbage collector needs, while ``limit`` buffers are in use
    (taken and not given back, or held by a send).  :meth:`take` itself
    never waits and allocates when no buffer is free; the pool keeps at most
    ``keep`` buffers for reuse.
    """

    def __init__(self, size: int, keep: int = 10, limit: int = 12, *, aligned: bool = False) -> None:
        self.size = size
        self.keep = keep
        self.limit = limit
        #: Each buffer holds ``size`` page-aligned bytes (:func:`aligned_window`),
        #: for O_DIRECT reads.  They are bytearrays a page longer, not
        #: anonymous mappings: glibc reuses a freed heap block, where a fresh
        #: mapping costs a page fault and a zeroed page for every 4 KiB.
        self.aligned = aligned
        self._free: list[bytearray] = []
        self._held: deque[tuple[bytearray, list[Tracker]]] = deque()
        self._busy = 0  # taken and not given back, or held by a send

    def take(self) -> bytearray:
        self._recycle()
        self._busy += 1
        if self._free:
            return self._free.pop()
        return bytearray(self.size + DIRECT_ALIGN if self.aligned else self.size)

    def window(self, buf: bytearray) -> memoryview:
        """The ``size`` bytes of ``buf`` a chunk goes in (page-aligned when ``aligned``)."""
        return aligned_window(buf, self.size) if self.aligned else memoryview(buf)

    def give(self, buf: bytearray, trackers: Iterable[Tracker | None] = ()) -> None:
        pending = [t for t in trackers if t is not None and not t.done]
        if pending:
            self._held.append((buf, pending))
        else:
            self._busy -= 1
            self._reuse(buf)

    async def room(self, n: int = 1, timeout: float = 1.0) -> None:
        """Wait until ``n`` more buffers can be taken with at most ``limit``
        in use, polling the oldest send's tracker every 0.5 to 10 ms; give
        up after ``timeout`` seconds (a peer that stopped reading is the
        sender's own stall detection to judge, not the pool's)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.0005
        while self._recycle() + n > self.limit and loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(2 * delay, 0.01)

    def _recycle(self) -> int:
        """Reuse the buffers whose sends are done; return how many are in use."""
        held = self._held
        while held and all(t.done for t in held[0][1]):
            self._busy -= 1
            self._reuse(held.popleft()[0])
        return self._busy

    def _reuse(self, buf: bytearray) -> None:
        if len(self._free) + len(self._held) < self.keep:
            self._free.append(buf)


def read_exactly(fd: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` from byte ``offset`` of ``fd``; ShortRead at end of file, OSError."""
    while view:
        got = os.preadv(fd, [view], offset)
        if got == 0:
            raise ShortRead(f"end of file at byte {offset}")
        view = view[got:]
        offset += got


class ChunkReader:
    """Read ``fd`` from ``offset`` up to ``end`` in chunks of at most
    ``chunk`` bytes, in order, each hashed into ``hasher`` (if given) as it
    is read: in the event loop when the page cache holds it, else in a
    worker-thread hop (see the module's docstring).

    ``await next()`` returns ``(buffer, view)``: ``view`` holds the chunk and
    is a slice of ``buffer``, which the caller hands back with
    ``pool.give(buffer, trackers)`` once it has sent ``view``.  Raises
    :class:`ShortRead` when the file ends before ``end`` and ``OSError`` from
    the read.  One chunk is read at a time, so the hasher sees the chunks in
    file order.  Before taking a buffer it waits up to ``room_timeout``
    seconds for the pool to have room (:meth:`BufferPool.room`; 0: never
    waits).  :meth:`aclose` closes ``fd`` when ``owns_fd``, once no hop uses
    it.

    A chunk the page cache does not hold is read with ``O_DIRECT``
    (open(2)) when its offset is page-aligned and the pool's buffers are
    (the default pool's are, for a chunk size that is a multiple of
    :data:`DIRECT_ALIGN`): the disk's DMA then lands in the chunk buffer
    itself, with no page-cache pages to allocate, fill and copy from, which
    cost a download of a file the page cache had dropped about five times
    the CPU of the direct read.  The direct descriptor is a second open of
    the same file (``/proc/self/fd``), so it reads the same inode even if
    the name has been replaced; the kernel writes back any dirty pages of
    the range before a direct read, so the bytes are the file's.  Where
    ``O_DIRECT`` is refused (tmpfs, some FUSE file systems) or a chunk is
    not aligned, the read is a buffered one.  A reader without a hasher
    keeps :data:`READ_AHEAD` more direct reads under way, each in its own
    hop and buffer, so that the disk reads the next chunks while this one
    is sent (a chunk read ahead holds the bytes the file had when it was
    read: a file cut short meanwhile raises ShortRead at the first chunk
    read after the cut); a reader with one reads one chunk at a time, in
    order, for its hasher.
    """

    def __init__(
        self,
        fd: int,
        offset: int,
        end: int,
        chunk: int,
        hasher: Hasher | None = None,
        *,
        pool: BufferPool | None = None,
        owns_fd: bool = False,
        room_timeout: float = 1.0,
    ) -> None:
        self.fd = fd
        self.pool = pool if pool is not None else BufferPool(chunk, aligned=chunk % DIRECT_ALIGN == 0)
        self._room_timeout = room_timeout
        # The O_DIRECT descriptor: None until the first uncached chunk, -1
        # where it cannot be had or the pool's buffers are not aligned.
        self._direct: int | None = None if self.pool.aligned and _O_DIRECT else -1
        self._cold = False  # a chunk came from the disk by a direct read
        self._chunk = min(chunk, self.pool.size)
        self._hasher = hasher
        self._next = offset  # where the next chunk starts
        self._end = end
        self._owns_fd = owns_fd
        self._nowait = _RWF_NOWAIT is not None
        self._hop: asyncio.Future[None] | None = None
        # Direct reads under way ahead of _next: (buffer, chunk view, hop), in file order,
        # up to _ahead_end (where the next one would start).
        self._ahead: deque[tuple[bytearray, memoryview, asyncio.Future[None]]] = deque()
        self._ahead_end = offset

    @property
    def done(self) -> bool:
        """True once every chunk up to ``end`` has been handed out."""
        return self._next >= self._end

    async def next(self) -> tuple[bytearray, memoryview]:
        """The next chunk, read and hashed."""
        if self._next >= self._end:
            raise ShortRead("no bytes left to read")
        if self._ahead:
            return await self._next_ahead()
        n = min(self._chunk, self._end - self._next)
        if self._room_timeout:
            await self.pool.room(timeout=self._room_timeout)
        buf = self.pool.take()
        whole = self.pool.window(buf)
        view = whole[:n]
        # Once a chunk came from the disk by a direct read, the next ones go
        # straight there too: probing the page cache first would start its
        # read-ahead, filling pages (and reading the disk) for nothing.
        got = 0 if self._cold else self._read_cached(view, self._next)
        if got == n:
            if self._hasher is not None:
                self._hasher.update(view)
        else:
            loop = asyncio.get_running_loop()
            self._hop = loop.run_in_executor(None, self._read_rest, whole, n, got, self._next)
            # Shielded: a cancelled caller must not orphan a hop that still uses fd.
            await asyncio.shield(self._hop)
            self._hop = None
        self._next += n
        self._read_ahead()
        return buf, view

    async def _next_ahead(self) -> tuple[bytearray, memoryview]:
        """The chunk whose read-ahead is first in line (at ``_next``)."""
        buf, view, hop = self._ahead.popleft()
        self._read_ahead()  # the disk goes on with the next ones meanwhile
        self._hop = hop
        await asyncio.shield(hop)
        self._hop = None
        self._next += len(view)
        return buf, view

    def _read_ahead(self) -> None:
        """Start direct reads of the chunks after those under way, up to
        :data:`READ_AHEAD` of them, once chunks come from the disk (and
        only without a hasher, which must see the chunks in order)."""
        if not self._cold or self._hasher is not None:
            return
        loop = asyncio.get_running_loop()
        start = max(self._ahead_end, self._next)
        while len(self._ahead) < READ_AHEAD and start < self._end:
            n = min(self._chunk, self._end - start)
            buf = self.pool.take()
            whole = self.pool.window(buf)
            hop = loop.run_in_executor(None, self._read_rest, whole, n, 0, start)
            self._ahead.append((buf, whole[:n], hop))
            start += n
        self._ahead_end = start

    def _read_cached(self, view: memoryview, offset: int) -> int:
        """Bytes of ``view`` filled from the page cache without waiting: 0 when
        the first byte is not cached, at the end of the file, or where
        RWF_NOWAIT is not supported."""
        got = 0
        while self._nowait and got < len(view):
            try:
                n = os.preadv(self.fd, [view[got:]], offset + got, _RWF_NOWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self._nowait = False  # this kernel or file system cannot: hop every time
                break
            if n == 0:
                break
            got += n
        return got

    def _read_rest(self, whole: memoryview, n: int, got: int, offset: int) -> None:
        """Fill ``whole[got:n]`` (the chunk's buffer window) from byte ``offset + got``."""
        start = offset + got
        if start % DIRECT_ALIGN or got % DIRECT_ALIGN or not self._read_direct(whole, n, got, start):
            read_exactly(self.fd, whole[got:n], start)
        if self._hasher is not None:
            self._hasher.update(whole[:n])

    def _read_direct(self, whole: memoryview, n: int, got: int, start: int) -> bool:
        """Fill ``whole[got:n]`` from byte ``start`` with O_DIRECT reads into
        ``whole``, a page-aligned window of the pool's size; False (nothing
        read) where direct reads cannot be had.  ShortRead at end of file."""
        if self._direct is None:
            try:
                self._direct = os.open(f"/proc/self/fd/{self.fd}", os.O_RDONLY | os.O_CLOEXEC | _O_DIRECT)
            except OSError:
                self._direct = -1
        if self._direct < 0:
            return False
        need = n - got
        # A direct read's length is whole pages too; the buffer has room past
        # the chunk (its size is a multiple of a page) and the file's end
        # cuts the read where it is.
        length = -(-need // DIRECT_ALIGN) * DIRECT_ALIGN
        region = whole[got : got + length]
        if len(region) < length:
            return False
        have = 0
        while have < need:
            try:
                r = os.preadv(self._direct, [region[have:]], start + have)
            except OSError as exc:
                if exc.errno != errno.EINVAL or have:
                    raise
                self._direct = -1  # refused after all: buffered from now on
                return False
            if r == 0 or (r % DIRECT_ALIGN and have + r < need):
                raise ShortRead(f"end of file at byte {start + have + r}")
            have += r
        self._cold = got == 0
        return True

    async def aclose(self) -> None:
        """Close ``fd`` if owned, once no hop uses it any more: now, or when
        the hops in flight finish (even if the caller is cancelled while
        it waits).  Never raises a hop's error."""
        hops = [h for h in (self._hop, *(a[2] for a in self._ahead)) if h is not None and not h.done()]
        self._hop = None
        self._ahead.clear()
        hop = asyncio.gather(*hops, return_exceptions=True) if hops else None
        if self._owns_fd:
            close_after(hop, self.fd)
        direct, self._direct = self._direct, -1
        if direct is not None and direct >= 0:
            close_after(hop, direct)
        if hop is not None and not hop.done():
            await asyncio.wait([hop])


def close_after(hop: asyncio.Future | None, fd: int) -> None:
    """Close ``fd`` now, or once ``hop`` (a worker-thread hop that may still
    use it) is over: a cancelled caller does not stop the thread, and a
    descriptor closed under it could be reused by another file before its
    read or write lands.  Never raises; the hop's error is retrieved and
    dropped (its caller is past caring)."""

    def close(done: asyncio.Future | None) -> None:
        if done is not None and not done.cancelled():
            done.exception()
        with contextlib.suppress(OSError):
            os.close(fd)

    if hop is None or hop.done():
        close(hop)
    else:
        hop.add_done_callback(close)


__all__ = [
    "BufferPool",
    "ChunkReader",
    "ShortRead",
    "Tracker",
    "close_after",
    "read_exactly",
]
