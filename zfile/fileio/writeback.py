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

Many files written at once share one :class:`WritebackBudget`: each
writer's step is the budget divided among the writers, so 100 uploads keep
about as much in the page cache together as one does (a step of 1 MiB each
instead of 8 MiB).  Without it the pages of files that end before their
first full step stay cached until memory pressure evicts them, and every new
write lands on never-used memory; on a virtual machine whose host backs
guest memory lazily that copy cost up to ten times as much CPU per byte as
a copy into pages just dropped and reused (``copy_folio_from_iter_atomic``
at 72-79 % of the daemon's CPU with 100 uploads at once).  :func:`drop`
releases a file's pages once its fsync has made them clean.

This is advice only: durability still comes from the fsync before the
rename, which is never skipped.  Where ``posix_fadvise`` is missing or fails,
nothing happens.
"""

from __future__ import annotations

import os

#: Bytes between two calls; 8 MiB keeps the extra system calls below one per
#: eight 1 MiB chunks.
DEFAULT_STEP = 8 << 20

#: Page cache (bytes) all writers of one budget may keep between them: about
#: two steps each.
DEFAULT_BUDGET = 64 << 20

#: The smallest step a shared budget gives a writer: one default chunk.
LEAST_STEP = 1 << 20

_ADVISE = getattr(os, "posix_fadvise", None)
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 0)


class WritebackBudget:
    """The page cache that files being written at the same time share.

    Each writer holds about two of its steps in the cache (the step being
    written back and the step being written), so a writer's step is
    ``total`` bytes divided by twice the number of writers, within
    ``[least, most]`` bytes.  Writers join with :meth:`writer` and leave
    with :meth:`Writeback.close`; the step is read at every write, so a
    writer's step shrinks when others join and grows when they leave.
    Used from the event loop's thread (join, leave) and worker threads
    (reading the step), which only read one int.
    """

    def __init__(self, total: int = DEFAULT_BUDGET, least: int = LEAST_STEP, most: int = DEFAULT_STEP) -> None:
        if not 0 < least <= most:
            raise ValueError(f"least ({least}) must be positive and at most most ({most})")
        self.total = total
        self.least = least
        self.most = most
        #: Writers that joined and have not left.
        self.writers = 0

    @property
    def step(self) -> int:
        """Bytes between two kicks of each writer, now."""
        return max(self.least, min(self.most, self.total // (2 * max(1, self.writers))))

    def writer(self, start: int = 0) -> Writeback:
        """A :class:`Writeback` from byte ``start`` whose step follows this
        budget; call its :meth:`~Writeback.close` when the file is done."""
        self.writers += 1
        return Writeback(start, budget=self)


#: The budget of the files a daemon's uploads write: the page cache is one
#: per machine, so all stores of a process share it.
UPLOADS = WritebackBudget()


class Writeback:
    """Track how far a sequentially written file has been handed to writeback.

    ``start`` is the offset (bytes from the file's start) where this writer
    begins, e.g. a resumed partial's length.  Call :meth:`due` after each
    write with the new end of the data; when it is true, call :meth:`kick`
    (a blocking system call: run it in a worker thread).  ``step`` is fixed
    bytes, unless ``budget`` (see :meth:`WritebackBudget.writer`) gives it.
    """

    def __init__(self, start: int = 0, step: int = DEFAULT_STEP, *, budget: WritebackBudget | None = None) -> None:
        self._step = step
        self._budget = budget
        self._kicked = start  # writeback requested up to here
        self._dropped = start  # pages before here were asked to leave the cache

    @property
    def step(self) -> int:
        """Bytes between two kicks, now."""
        return self._step if self._budget is None else self._budget.step

    def close(self) -> None:
        """Leave the budget, if any (idempotent)."""
        budget, self._budget = self._budget, None
        if budget is not None:
            budget.writers -= 1
            self._step = budget.step

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


def drop(fd: int) -> None:
    """Ask the kernel to drop ``fd``'s cached pages, after an fsync made them
    clean, so the next files written reuse that memory.  Never raises."""
    if _ADVISE is None:
        return
    try:
        _ADVISE(fd, 0, 0, _DONTNEED)
    except OSError:
        pass


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
