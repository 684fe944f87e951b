"""The directories one batch of whole files writes into (:mod:`zfile.store.wholes`).

The root is opened once and each parent directory of the batch once,
walking down from the root with ``O_NOFOLLOW`` (openat(2) style, no path
resolution per file); a path the walk cannot follow (a symbolic link inside
the root, a file where a directory belongs) takes the full check of
:meth:`zfile.store.layout.Layout.check_path`.  The batch's reservation of
unnamed files (:mod:`zfile.store.unnamed`) is held here too, and given
back when the directories are closed.  Blocking calls: run them in the
batch's worker-thread hop.
"""

from __future__ import annotations

import contextlib
import errno
import os

from zfile.store import unnamed
from zfile.store.layout import Layout, other_fs_error

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class Directories:
    """The descriptors of the directories one batch writes into, keyed by
    the names' parent ("" for the root); closed by :meth:`close`."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self.root_fd = -1
        self.tmp_fd = -1
        self.fds: dict[str, int] = {}
        #: The parents this batch made (empty when made): their names need no lstat.
        self.made: set[str] = set()
        self._opened: list[int] = []
        self._reserved = 0

    def reserve(self, wanted: int) -> int:
        """Reserve up to ``wanted`` unnamed files from the process's budget
        for this batch, until :meth:`close`; return how many."""
        granted = unnamed.DESCRIPTORS.take(wanted)
        self._reserved += granted
        return granted

    def open(self) -> None:
        """Open the root and the partials' directory; OSError."""
        self.root_fd = self._keep(os.open(self._layout.real_root, _DIR_FLAGS))
        self.tmp_fd = self._keep(os.open(self._layout.tmp, _DIR_FLAGS))

    def _keep(self, fd: int) -> int:
        self._opened.append(fd)
        return fd

    def parent(self, name: str, parent: str) -> int:
        """The descriptor of ``name``'s parent directory ``parent``, made
        when missing.  BadName when it is outside the root, in the private
        directory, or a file is in the way (the checks of
        :meth:`Layout.check_path`) or on another file system than the
        partials' directory; OSError."""
        fd = self.fds.get(parent)
        if fd is not None:
            return fd
        try:
            fd = self._walk(name, parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise
            # A symbolic link or a file on the way: the full check decides.
            path = self._layout.check_path(name, True)
            os.makedirs(path.parent, exist_ok=True)
            fd = self._keep(os.open(os.path.realpath(path.parent), _DIR_FLAGS))
        self.fds[parent] = fd
        return fd

    def _walk(self, name: str, parent: str) -> int:
        fd = self.root_fd
        if not parent:
            return fd
        made = False
        for part in parent.split("/"):
            try:
                fd = self._keep(os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd))
                made = False
                # Before anything is made below it: a mount inside the root.
                if os.fstat(fd).st_dev != self._layout.device:
                    raise other_fs_error(name, self._layout.real_root)
            except FileNotFoundError:
                try:
                    os.mkdir(part, dir_fd=fd)
                    made = True
                except FileExistsError:
                    made = False
                fd = self._keep(os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd))
        if made:
            self.made.add(parent)
        return fd

    def close(self) -> None:
        """Close the directories and return the batch's reservation: call
        it once every unnamed file of the batch is closed."""
        for fd in self._opened:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._opened = []
        self.fds = {}
        self.made = set()
        unnamed.DESCRIPTORS.give(self._reserved)
        self._reserved = 0


__all__ = ["Directories"]
