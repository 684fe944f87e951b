"""Reading small files for one PUT-MANY message (client side).

:func:`read_wholes` runs in one worker thread for a whole batch: for small
files the cost is the number of system calls and thread hops, not the bytes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from zfile.errors import LocalFileError
from zfile.protocol.digest import DEFAULT_ALGO, new_hasher
from zfile.protocol.events import PutFile
from zfile.protocol.limits import MTIME_MAX_NS, MTIME_MIN_NS, mtime_outside

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def read_wholes(
    files: Sequence[tuple[str | os.PathLike[str], str]], inline_max: int, most_bytes: int, clobber: bool
) -> list[PutFile | LocalFileError | None]:
    """Read and hash each ``(path, name)`` whole, for one PUT-MANY.

    For each file in order: a :class:`PutFile` (bytes, mode, mtime and
    ``DEFAULT_ALGO`` digest); a :class:`LocalFileError` when it is missing,
    unreadable, not a regular file, or changed size while being read; or
    None when it is over ``inline_max`` bytes, or would take the batch past
    ``most_bytes`` bytes in all (send it on its own).  Blocking: run it in a
    worker thread.
    """
    out: list[PutFile | LocalFileError | None] = []
    total = 0
    hasher_of = new_hasher
    for path, name in files:
        try:
            # O_NONBLOCK: opening a FIFO put in a file's place must not hang the batch.
            fd = os.open(path, _FLAGS)
        except OSError as exc:
            out.append(LocalFileError(f"cannot read {path}: {exc.strerror}"))
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                out.append(LocalFileError(f"{path} is not a regular file"))
                continue
            size = st.st_size
            if size > inline_max or total + size > most_bytes:
                out.append(None)
                continue
            # One read of size + 1 bytes: a file that grew since its fstat shows it.
            data = os.read(fd, size + 1)
        except OSError as exc:
            out.append(LocalFileError(f"cannot read {path}: {exc.strerror}"))
            continue
        finally:
            os.close(fd)
        if len(data) != size:
            out.append(LocalFileError(f"{path} changed while being sent"))
            continue
        if not MTIME_MIN_NS <= st.st_mtime_ns <= MTIME_MAX_NS:  # one such file would void the whole message
            out.append(LocalFileError(f"cannot send {path}: {mtime_outside(st.st_mtime_ns)}"))
            continue
        hasher = hasher_of(DEFAULT_ALGO)
        hasher.update(data)
        out.append(PutFile(name, size, st.st_mtime_ns, st.st_mode & 0o7777, hasher.digest(), clobber, data))
        total += size
    return out
