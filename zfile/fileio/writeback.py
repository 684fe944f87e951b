"""Early writeback for a file written front to back and fsynced at the end.

A receiver writes a whole file into the page cache and fsyncs it once, before
the atomic rename.  Left alone, the kernel starts writing dirty pages back
only past ``vm.dirty_background_ratio`` of memory (gigabytes on a large
machine), so the final fsync would pay for the whole file after the last byte
arrived, and a large file would fill the page cache with pages nobody reads
again.  :class:`Writeback` instead asks the kernel, every ``step`` bytes, to
start writing back the range just written (``posix_fadvise(2)``
``POSIX_FADV_DONTNEED`` initiates writeback of dirty pages on Linux) and to
drop the range before it, whose writeback has had a step's time to finish.
Disk writes then overlap the transfer, the final fsync has only the tail
left, and the file's footprint in the page cache stays about two steps.

This is advice only: durability still comes from the fsync before the
rename, which is never skipped.  Where ``posix_fadvise`` is missing or fails,
nothing happens.
"""

from __future__ import annotations

import os

#: Bytes between two calls; 8 MiB keeps the extra system calls below one per
#: eight 1 MiB chunks.
DEFAULT_STEP = 8 << 20

_ADVISE = getattr(os, "posix_fadvise", None)
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 0)


class Writeback:
    """Track how far a sequentially written file has been handed to writeback.

    ``start`` is the offset (bytes from the file's start) where this writer
    begins, e.g. a resumed partial's length.  Call :meth:`due` after each
    write with the new end of the data; when it is true, call :meth:`kick`
    (a blocking system call: run it in a worker thread).
    """

    def __init__(self, start: int = 0, step: int = DEFAULT_STEP) -> None:
        self.step = step
        self._kicked = start  # writeback requested up to here
        self._dropped = start  # pages before here were asked to leave the cache

    def due(self, end: int) -> bool:
        """True when at least ``step`` bytes were written since the last kick."""
        return _ADVISE is not None and end - self._kicked >= self.step

    def kick(self, fd: int, end: int) -> None:
        """Start writeback of ``[last kick, end)`` and drop ``[last drop, last kick)``.

        ``fd`` is the file's descriptor, ``end`` the offset just past the last
        byte written.  Never raises: a failure only loses the advice.
        """
        if _ADVISE is None or end <= self._kicked:
            return
        try:
            _ADVISE(fd, self._kicked, end - self._kicked, _DONTNEED)
            if self._kicked > self._dropped:
                _ADVISE(fd, self._dropped, self._kicked - self._dropped, _DONTNEED)
        except OSError:
            return
        self._dropped, self._kicked = self._kicked, end


def start_all(fds: list[int]) -> None:
    """Ask the kernel to start writing back every dirty page of each of
    ``fds`` now, without waiting for it (for files about to be fsynced
    together: the first fsync's journal commit can then carry the others'
    blocks too).  Blocking: run it in a worker thread.  Never raises."""
    if _ADVISE is None:
        return
    for fd in fds:
        try:
            _ADVISE(fd, 0, 0, _DONTNEED)
        except OSError:
            pass
