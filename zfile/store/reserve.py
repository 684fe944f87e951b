"""Space held back on the store's disk for the catalog's last writes.

The store changes the disk before it records the change: a batch's files
are linked to their final names, then their rows written (group commit);
``mv`` renames, ``rm`` unlinks, then the catalog follows.  A disk that fills
between the two makes SQLite fail with ``SQLITE_FULL``, and the catalog no
longer says what the disk holds: a new file is there but neither listed nor
served, a replaced file's row gives the old bytes' size and digest, a
removed file's row stays.  Only the next start's recovery would mend it.

So the catalog keeps a file of allocated blocks beside it (a ballast,
``<root>/.zfile/catalog.reserve``, made with posix_fallocate(3)).  When a
write that records a change already on disk meets a full disk, the catalog
frees the reserve and writes again; it then refuses uploads (read-only)
until there is room to hold the reserve again.  Another process filling
the same disk can take the freed blocks first: the reserve makes the
catalog's write very likely to succeed, not certain.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

#: The most held back: rows of the largest group commit, many times over.
MAX_BYTES = 16 << 20
#: The least: on a small disk, a 64th of it, but never under this.
MIN_BYTES = 256 << 10


def size_for(total: int) -> int:
    """The reserve's size in bytes for a file system of ``total`` bytes: a
    64th of it, within :data:`MIN_BYTES` and :data:`MAX_BYTES`."""
    return max(MIN_BYTES, min(MAX_BYTES, total // 64))


class Reserve:
    """The reserve file at ``path`` (module docstring).  Blocking: every
    method runs system calls."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        #: Its size in bytes once :meth:`hold` has measured the disk; 0 before.
        self.size = 0

    def hold(self) -> bool:
        """Allocate the reserve (a no-op when it is already allocated);
        True when it is held, False when the disk has no room for it (then
        no file is left).  Raises OSError for any other failure."""
        fs = os.statvfs(self.path.parent)
        self.size = size_for(fs.f_blocks * fs.f_frsize)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(fd, 0, self.size)
        except OSError as exc:
            os.close(fd)
            fd = -1
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return False
        finally:
            if fd >= 0:
                os.close(fd)
        return True

    def release(self) -> bool:
        """Free the reserve's blocks; True when there was one to free."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        return True
