"""Unnamed files (open(2) ``O_TMPFILE``): a whole file written with no name
at all, then given its final name by one ``linkat``.

A named partial costs a directory entry made in the partials' directory
and a rename out of it (the entry found, removed, and added to the final
directory); an unnamed file costs one entry added to the final directory,
and a crash before its link leaves nothing behind, as the kernel frees an
inode no name and no descriptor holds.  The catch is that the descriptor is
the file's only handle until the link: each one stays open from the write
to the publication, so the process holds at most :data:`BUDGET` of them at
once (a quarter of its ``RLIMIT_NOFILE`` soft limit, at most 4096) and a
file past the budget takes a named partial instead.

The link goes through ``/proc/self/fd/N`` with ``AT_SYMLINK_FOLLOW``, the
way linkat(2) documents for a process without ``CAP_DAC_READ_SEARCH``;
without ``/proc`` (or on a file system that refuses ``O_TMPFILE``:
EOPNOTSUPP, EISDIR, EINVAL; or out of descriptors: EMFILE, ENFILE) the
file is named, as before.  Blocking
calls: run them in a worker thread.
"""

from __future__ import annotations

import errno
import os
import resource
import threading

_FLAGS = os.O_WRONLY | os.O_CLOEXEC | getattr(os, "O_TMPFILE", 0)
_PROC_FD = "/proc/self/fd"
#: The errors that mean "not here": name the file instead.
UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.EMFILE, errno.ENFILE})


def _budget() -> int:
    if not getattr(os, "O_TMPFILE", 0) or not os.path.isdir(_PROC_FD):
        return 0
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 0
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(0, min(4096, soft // 4))


#: Unnamed files this process may hold open at once.
BUDGET = _budget()


class Budget:
    """The unnamed files open now, out of ``most`` (thread-safe: the write
    hops of several batches take from it at once)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._used = 0
        self._lock = threading.Lock()

    def take(self, wanted: int) -> int:
        """Reserve up to ``wanted`` descriptors; return how many were granted."""
        with self._lock:
            granted = max(0, min(wanted, self.most - self._used))
            self._used += granted
            return granted

    def give(self, count: int) -> None:
        """Return ``count`` descriptors reserved by :meth:`take`."""
        with self._lock:
            self._used -= count


#: The process's one budget.
DESCRIPTORS = Budget(BUDGET)


def create(dir_fd: int, mode: int) -> int:
    """Open a new unnamed regular file on the file system of ``dir_fd``
    with ``mode`` (less the umask), for writing; return its descriptor.
    OSError, one of :data:`UNSUPPORTED` when the file should be named
    instead."""
    return os.open(".", _FLAGS, mode, dir_fd=dir_fd)


def link(fd: int, name: str, dir_fd: int) -> None:
    """Give the unnamed file ``fd`` the name ``name`` in ``dir_fd``; atomic,
    and FileExistsError (EEXIST) when that name exists, as link(2).  OSError."""
    os.link(f"{_PROC_FD}/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)


__all__ = ["BUDGET", "DESCRIPTORS", "UNSUPPORTED", "Budget", "create", "link"]
