"""File-system helpers shared by the store and its uploads and downloads.

:func:`store_error` is the one place an ``OSError`` becomes a zfile error:
ENOSPC, EDQUOT and EFBIG become :class:`~zfile.errors.NoSpace`, EMFILE and
ENFILE :class:`~zfile.errors.Busy`, anything else a
:class:`~zfile.errors.StoreError` naming the file.  The rest are the
blocking system calls that make a rename durable (:func:`fsync_dir`) and
clean up partials (:func:`unlink_all`), and :func:`syncfs`, which makes a
whole batch of small files durable at once; run them in a worker thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

from zfile.errors import BadName, Busy, NoSpace, StoreError
from zfile.protocol.names import quote_name

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NO_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})


def store_error(exc: OSError, name: str, doing: str) -> StoreError | Busy:
    """The error to raise for ``exc``, met while trying to ``doing`` ``name``.
    Out of descriptors (EMFILE, ENFILE: other transfers hold them) is Busy,
    which clients retry after a backoff, as for every slot taken."""
    if exc.errno in _NO_DESCRIPTORS:
        return Busy(
            f"could not {doing} {quote_name(name)}: {exc.strerror} (the daemon holds as many files open as its "
            "limit allows; try again shortly)"
        )
    if exc.errno in _NO_SPACE:
        return NoSpace(f"no space left on the store's disk while writing {quote_name(name)}")
    if exc.errno == errno.ENAMETOOLONG:
        # The path checks catch this first; a path that grew past them is still the name's fault.
        return BadName(f"{quote_name(name)} is too long for the store's file system (NAME_MAX or PATH_MAX)")
    return StoreError(f"could not {doing} {quote_name(name)}: {exc.strerror or exc}")


def fsync_dir(path: Path | str) -> None:
    """Fsync the directory ``path``, so the entries renamed into it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_all(*paths: Path) -> None:
    """Delete ``paths``; one already gone is no error, any other OSError is raised."""
    for path in paths:
        path.unlink(missing_ok=True)


def _load_syncfs():  # noqa: ANN202 (a ctypes function pointer)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        call = libc.syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int
    return call


_SYNCFS = _load_syncfs()


def syncfs(fd: int) -> None:
    """Write back everything dirty on the file system holding ``fd``
    (syncfs(2)): data, inodes and directories, every writer's, and wait for
    it.  One call makes a whole batch of small files durable for about the
    cost of one fsync; the price is that it also flushes whatever other
    processes have left dirty on that file system, so a batch may wait for
    their writeback too.  Where libc has no syncfs (Python's ``os`` has
    none), each open descriptor cannot be known here, so ``sync(2)`` is
    used: the same guarantee for every file system.  OSError."""
    if _SYNCFS is None:
        os.sync()
        return
    if _SYNCFS(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
