"""Appending a received file with ``O_DIRECT`` writes: the daemon's uploads.

A file written through the page cache costs the receiver a copy into fresh
cache pages per byte, then the kernel's writeback of them; on this kind of
virtual machine that copy was most of the daemon's CPU of a large upload
(1 GiB: 1.1-1.2 s of CPU buffered against 0.2-0.3 s direct, one thread,
same disk), and how fast the cache's pages reached the disk swung
several-fold from run to run.  An ``O_DIRECT`` write (open(2)) goes from
the process's buffer to the disk, and an fsync afterwards has only the
file's metadata and its last partial page left to write.

A direct write's buffer address, file offset and length must be aligned to
the file system's logical block size; :data:`ALIGN` (a page) is a multiple
of every one Linux file systems use.  A chunk arrives at any length, in a
ZeroMQ frame at any address, so :class:`DirectAppender` copies it into a
page-aligned staging buffer (one of :data:`STAGES`, reused), writes the
whole pages direct and keeps the rest, less than a page, until more comes
or :meth:`~DirectAppender.flush` writes it through the page cache (before
the fsync of a commit or a suspend).  A file that does not start at a page
boundary (a resumed partial) has its first bytes up to one written through
the page cache too.  Where ``O_DIRECT`` is refused (tmpfs: EINVAL, a
system without it) the appender writes through the page cache with
:class:`~zfile.fileio.writeback.Writeback`, as before.

Durability still comes from the fsync before the rename: a direct write
may sit in the disk's own cache.  The file on disk is always a prefix of
what was appended (one writer, in order), so a kill -9 loses at most the
unwritten tail, which a resume then asks for again.  Blocking calls: run
them in a worker thread, one at a time per appender.  Offsets and sizes are
bytes from the file's start.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading

from zfile.fileio.writeback import Writeback
from zfile.protocol.digest import Hasher
from zfile.protocol.events import Buffer

_O_DIRECT = getattr(os, "O_DIRECT", 0)
#: Alignment of a direct write's buffer, offset and length (bytes).
ALIGN = 4096
#: Bytes of a worker thread's staging buffer: a default chunk (1 MiB) and
#: the tail of less than a page left before it.  A larger chunk is written
#: in pieces of this size.
STAGE = (1 << 20) + ALIGN

#: Staging buffers a process holds at most, so this many direct writes run
#: at once: more did not write faster here (four threads in turn: 769-1,010
#: MiB/s against 897-1,602 for one), and each buffer is a MiB of memory.
STAGES = 4


class _Stages:
    """The process's staging buffers (anonymous memory: page-aligned), made
    when first needed, at most :data:`STAGES`; a writer waits for one."""

    def __init__(self, most: int) -> None:
        self._most = most
        self._made = 0
        self._free: list[memoryview] = []
        self._cond = threading.Condition()

    def take(self) -> memoryview:
        with self._cond:
            while not self._free and self._made >= self._most:
                self._cond.wait()
            if self._free:
                return self._free.pop()
            self._made += 1
        return memoryview(mmap.mmap(-1, STAGE))

    def give(self, stage: memoryview) -> None:
        with self._cond:
            self._free.append(stage)
            self._cond.notify()


_STAGES = _Stages(STAGES)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


class DirectAppender:
    """Append to the file open for writing on ``fd`` from byte ``end`` (its
    length now), whole pages with ``O_DIRECT`` (module docstring).

    ``writeback`` serves the writes that go through the page cache when
    direct ones cannot be had.  :attr:`end` is where the next byte goes;
    :attr:`direct` is False once direct writes were refused.  ``fd`` stays
    the caller's: :meth:`close` closes only the appender's own descriptor.
    """

    def __init__(self, fd: int, end: int, writeback: Writeback) -> None:
        self.fd = fd
        self.end = end
        self.writeback = writeback
        #: Bytes appended past the last page written direct, not yet on disk.
        self._tail = b""
        # The O_DIRECT descriptor: None until the first direct write, -1 refused.
        self._direct: int | None = None if _O_DIRECT else -1
        self._lock = threading.Lock()

    @property
    def direct(self) -> bool:
        """False once this file is written through the page cache only."""
        return self._direct != -1

    def append(self, data: Buffer, hasher: Hasher) -> None:
        """Append ``data`` and hash it into ``hasher``.  OSError (ENOSPC,
        EIO...) from the write, after which the file holds a prefix of what
        was appended."""
        view = memoryview(data).cast("B")
        with self._lock:
            self._append(view)
        hasher.update(view)

    def _append(self, view: memoryview) -> None:
        if not view:
            return
        if self._direct != -1 and not self._tail and self.end % ALIGN:
            # Up to the first page boundary through the page cache: a resumed partial's length is any.
            head = view[: ALIGN - self.end % ALIGN]
            self._buffered(head)
            view = view[len(head) :]
        while view and self._direct != -1:
            view = self._direct_piece(view)
        if view:
            self._buffered(view)

    def _buffered(self, view: memoryview) -> None:
        _pwrite_all(self.fd, view, self.end)
        self.end += len(view)
        if self.writeback.due(self.end):
            self.writeback.kick(self.fd, self.end)

    def _direct_piece(self, view: memoryview) -> memoryview:
        """Stage the tail and what fits of ``view``, write the whole pages
        direct, keep the rest as the tail; return what did not fit."""
        if self._direct is None:
            try:
                self._direct = os.open(f"/proc/self/fd/{self.fd}", os.O_WRONLY | os.O_CLOEXEC | _O_DIRECT)
            except OSError:
                self._direct = -1
                return view
        stage = _STAGES.take()
        try:
            return self._write_staged(stage, view)
        finally:
            _STAGES.give(stage)

    def _write_staged(self, stage: memoryview, view: memoryview) -> memoryview:
        kept = len(self._tail)
        taken = min(len(view), STAGE - kept)
        stage[:kept] = self._tail
        stage[kept : kept + taken] = view[:taken]
        total = kept + taken
        whole = total - total % ALIGN
        start = self.end - kept  # a page boundary: the tail starts at one
        done = 0
        try:
            while done < whole:
                n = os.pwrite(self._direct, stage[done:whole], start + done)
                if n <= 0 or n % ALIGN:
                    done += max(n, 0)
                    break  # a short write off a page boundary: the rest goes buffered
                done += n
        except OSError as exc:
            if exc.errno != errno.EINVAL or done:
                raise
            self._refuse()  # refused after all (this file system): buffered from here
        if done < whole or self._direct == -1:
            self._tail = b""
            self.end = start + done
            self._buffered(stage[done:total])
        else:
            self._tail = bytes(stage[whole:total])
            self.end = start + total
        return view[taken:]

    def _refuse(self) -> None:
        fd, self._direct = self._direct, -1
        if fd is not None and fd >= 0:
            os.close(fd)

    def flush(self) -> None:
        """Write the tail through the page cache, so that the file holds all
        that was appended (before an fsync).  OSError."""
        with self._lock:
            tail, self._tail = self._tail, b""
            if tail:
                _pwrite_all(self.fd, memoryview(tail), self.end - len(tail))

    def close(self) -> None:
        """Close the direct descriptor, if any (idempotent); the tail not
        flushed is dropped.  Never raises."""
        with self._lock:
            self._tail = b""
            fd, self._direct = self._direct, -1
            if fd is not None and fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.writeback.close()


__all__ = ["ALIGN", "STAGE", "STAGES", "DirectAppender"]
