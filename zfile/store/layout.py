"""Where the local store keeps things on disk, and the checks a path passes before use.

A stored file lives at ``<root>/<name>``; an upload in progress at
``<root>/.zfile/tmp/<transfer>.part``, its parameters beside it in
``<transfer>.json``; the catalog at ``<root>/.zfile/catalog.db``; and
``<root>/.zfile/lock``, which the open store holds locked (flock(2)) so
that only one daemon uses a root at a time.  :class:`Layout` knows these paths and checks a name's path against the tree
(symlinks leaving the root, directories or files in the way, components over
the file system's NAME_MAX, paths over PATH_MAX, a directory on another file
system than the partials' directory) and the free space for an upload.  The checks
block: callers run them in a worker thread, except :meth:`Layout.resolve`,
which makes that hop itself.  Sizes are bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

import aiofiles.os

from zfile.errors import BadName, Exists, NameConflict, NoSpace, StoreError
from zfile.protocol.names import PRIVATE_DIR, quote_name
from zfile.store.fs import store_error


def exists_error(name: str) -> Exists:
    """The error for an upload that must not replace the existing ``name``."""
    return Exists(f"{quote_name(name)} already exists in the store")


def remove_empty_dir(path: str | Path, dir_fd: int | None = None) -> bool:
    """Remove the directory ``path`` (relative to ``dir_fd`` when given) if
    it is empty, and say whether it went.  The store keeps files, not
    directories: one its files have left (``rm``, ``mv``) must not keep a
    file of its name out.  rmdir(2) refuses a directory that holds anything,
    so an upload filling it meanwhile keeps it."""
    try:
        os.rmdir(path, dir_fd=dir_fd)
    except OSError:
        return False
    return True


def other_fs_error(name: str, root: str) -> BadName:
    """The error for a name whose directory is on another file system than
    the store's partials directory (a mount inside the root): a file is
    committed by a rename (or link) from there, and rename(2) cannot cross
    file systems (EXDEV)."""
    return BadName(
        f"{quote_name(name)} would be stored on another file system than the store's, mounted inside "
        f"{root}; a file is committed by a rename from the store's partials directory, which cannot "
        "cross file systems: choose a name outside that mount, or serve it as a store of its own"
    )


class Layout:
    """The on-disk layout of a store under ``root``, and its path checks.

    :attr:`tmp` is the partials' directory, :attr:`catalog_path` the
    catalog's file.  :attr:`real_root` (the root with symlinks resolved) and
    :attr:`name_max` (the longest file name component, in bytes) are known
    once :meth:`open` has run, as is :attr:`path_max` (the longest path a
    system call takes, in bytes with its NUL); :attr:`real_root` is "" while
    closed.  :attr:`device` is the partials' directory's file system
    (``st_dev``), where every stored file's directory must be.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / PRIVATE_DIR / "tmp"
        self.catalog_path = self.root / PRIVATE_DIR / "catalog.db"
        #: Held locked (flock(2)) while open: one daemon per store.
        self.lock_path = self.root / PRIVATE_DIR / "lock"
        self._lock_fd = -1
        self.real_root = ""
        #: len(os.fsencode(real_root)), for the PATH_MAX check of every name.
        self.real_root_bytes = 0
        self.name_max = 255
        self.path_max = 4096
        self.device = -1

    async def open(self) -> None:
        """Create the root and the partials' directory and learn the root's
        real path and NAME_MAX.  StoreError when that fails, and when the
        partials' directory is on another file system than the root (a
        mount at ``.zfile`` or below): no file could be committed."""
        try:
            await aiofiles.os.makedirs(self.tmp, exist_ok=True)
            real_root = await asyncio.to_thread(os.path.realpath, self.root)
            self.real_root_bytes = len(os.fsencode(real_root))
            self.name_max = await asyncio.to_thread(os.pathconf, real_root, "PC_NAME_MAX")
            self.path_max = await asyncio.to_thread(os.pathconf, real_root, "PC_PATH_MAX")
            self.device = (await asyncio.to_thread(os.stat, self.tmp)).st_dev
            root_device = (await asyncio.to_thread(os.stat, real_root)).st_dev
        except OSError as exc:
            raise StoreError(f"could not create the store at {self.root}: {exc.strerror or exc}") from exc
        if root_device != self.device:
            raise StoreError(
                f"the store's partials directory {self.tmp} is on another file system than its root "
                f"{self.root}: a file is committed by a rename from there, which cannot cross file systems; "
                f"unmount what is mounted at {self.tmp.parent} or below"
            )
        self._lock_fd = await asyncio.to_thread(self._hold)
        self.real_root = real_root  # open only now (check_open)

    def _hold(self) -> int:
        """Lock :attr:`lock_path` for this process, and write its pid there.
        StoreError when another process holds it: two daemons on one store
        would each take the other's uploads in progress for litter (a
        partial without its state file, an intent cut short) and delete them."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"could not open the store's lock {self.lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            with contextlib.suppress(OSError):
                # Empty while the holder has locked it but not yet written its pid.
                pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                holder = f" (pid {pid})" if pid.isdigit() else ""
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreError(f"could not lock the store's lock {self.lock_path}: {exc.strerror}") from exc
            raise StoreError(
                f"the store at {self.root} is in use by another zfile daemon{holder}: stop it, "
                "or give this one a --root of its own"
            ) from None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def lost(self) -> str | None:
        """Why the root this layout opened can no longer be served, or None:
        the lock file held open since :meth:`open` was unlinked (the root
        deleted, as by ``rm -rf``, or the lock file alone), or
        :attr:`lock_path` now names another file or nothing (the root moved
        or replaced).  Either way the lock
        is no longer where a second daemon would look, and the catalog
        describes files that are not there.  Two system calls, no error:
        what cannot be looked at is not judged lost."""
        if self._lock_fd < 0:
            return None
        try:
            held = os.fstat(self._lock_fd)
        except OSError:
            return None
        if held.st_nlink == 0:
            if os.path.isdir(self.root / PRIVATE_DIR):
                return (
                    f"the store's lock file {self.lock_path} was deleted while the daemon ran, so that a second "
                    "daemon could open the store beside this one"
                )
            return f"the store's root {self.root} was deleted while the daemon ran (its lock file is gone)"
        try:
            now = os.stat(self.lock_path)
        except FileNotFoundError:
            now = None
        except OSError:
            return None
        if now is None or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            return f"the store's root {self.root} was moved or replaced while the daemon ran"
        return None

    def mend(self) -> str | None:
        """Make the partials' directory again when it was deleted while
        open (as by ``rm -rf ROOT/.zfile/tmp``), so that uploads start again;
        what it was made again for, for the log, or None when nothing was
        missing.  Uploads whose partials went with it fail at their commit
        and start over.  Blocking; an error other than "missing" is left for
        the uploads to report."""
        if self._lock_fd < 0 or os.path.lexists(self.tmp):
            return None
        try:
            os.mkdir(self.tmp)
        except OSError:
            return None
        return (
            f"the store's partials directory {self.tmp} was deleted while the daemon ran: made it again "
            "(uploads that had a partial there fail and start over)"
        )

    def close(self) -> None:
        self.real_root = ""
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            os.close(fd)  # which releases the lock

    def check_open(self) -> None:
        """StoreError unless :meth:`open` has run and :meth:`close` has not."""
        if not self.real_root:
            raise StoreError(f"the store at {self.root} is not open")

    def part_path(self, transfer: str) -> Path:
        """The partial file of the upload ``transfer``."""
        return self.tmp / f"{transfer}.part"

    def state_path(self, transfer: str) -> Path:
        """The state file (parameters, then commit intent) of the upload ``transfer``."""
        return self.tmp / f"{transfer}.json"

    def check_path(self, name: str, for_write: bool, realpaths: dict[str, str] | None = None) -> Path:
        """Return root/name, raising BadName when its parent resolves outside
        the root or into the private directory, or (for_write) when the path
        is a symlink or directory or a file blocks a needed directory; OSError
        when the tree cannot be inspected.  Runs twice for every file stored
        (before the write and before the rename), so it makes as few system
        calls as the checks allow.  BadName too when the real path would
        exceed PATH_MAX, which the system calls on it would refuse, and (for
        write) when its directory is on another file system than
        :attr:`device`.

        ``realpaths``, when given, caches each parent directory's real path
        across calls (keyed by the parent as named): for a batch of names
        checked while the tree does not change, such as a catalog page at
        start-up, where most names share a parent."""
        path = self.root / name
        length = self.real_root_bytes + 1 + len(name.encode("utf-8")) + 1
        if length > self.path_max:
            raise BadName(
                f"{quote_name(name)} would make a path of {length} bytes in the store, over the "
                f"{self.path_max} bytes of PATH_MAX; use a shorter name"
            )
        if realpaths is None:
            parent = os.path.realpath(path.parent)
        else:
            named = str(path.parent)
            parent = realpaths.get(named)
            if parent is None:
                parent = realpaths[named] = os.path.realpath(named)
        root = self.real_root
        private = os.path.join(root, PRIVATE_DIR)
        if not (parent == root or parent.startswith(root + os.sep)) or (
            parent == private or parent.startswith(private + os.sep)
        ):
            raise BadName(f"{quote_name(name)} resolves outside the store through a symbolic link")
        if not for_write:
            return path
        if any(len(part.encode()) > self.name_max for part in name.split("/")):
            raise BadName(f"{quote_name(name)} has a component longer than {self.name_max} bytes")
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = 0
        except NotADirectoryError:
            raise NameConflict(f"{quote_name(name)} needs a directory where the store holds a file") from None
        if stat.S_ISLNK(mode):
            raise BadName(f"{quote_name(name)} is a symbolic link in the store")
        if stat.S_ISDIR(mode) and not remove_empty_dir(path):
            raise NameConflict(f"{quote_name(name)} is a directory in the store")
        ancestor = parent
        while True:
            try:
                st = os.stat(ancestor)
                break
            except FileNotFoundError:
                ancestor = os.path.dirname(ancestor)
        if not stat.S_ISDIR(st.st_mode):
            raise NameConflict(f"{quote_name(name)} needs a directory where the store holds a file")
        # A directory made later inside a mount is on the mount's file system, as its nearest ancestor is.
        if st.st_dev != self.device:
            raise other_fs_error(name, self.real_root)
        return path

    async def resolve(self, name: str, for_write: bool) -> Path:
        """:meth:`check_path` in a worker thread, its OSError mapped to StoreError or NoSpace."""
        try:
            return await asyncio.to_thread(self.check_path, name, for_write)
        except OSError as exc:
            raise store_error(exc, name, "inspect the path of") from exc

    def check_space(self, name: str, need: int) -> None:
        """Raise NoSpace when the store's disk has fewer than ``need`` bytes
        free for unprivileged writers (statvfs f_bavail); StoreError when it
        cannot be measured."""
        try:
            fs = os.statvfs(self.root)
        except OSError as exc:
            raise store_error(exc, name, "measure free space for") from exc
        if (free := fs.f_bavail * fs.f_frsize) < need:
            raise NoSpace(
                f"no space on the store's disk for {quote_name(name)}: "
                f"it needs {need} more bytes, the disk has {free} free"
            )

    def check_inline(self, name: str, size: int, clobber: bool, listed: bool) -> Path:
        """The disk checks of a streamed upload's begin, for a whole file
        held in memory, in the same order: path (BadName), existing name
        unless ``clobber`` (Exists; ``listed`` says the catalog has it), free
        space for ``size`` bytes (NoSpace).  Returns the final path."""
        try:
            final = self.check_path(name, True)
            if not clobber and (listed or os.path.lexists(final)):
                raise exists_error(name)
        except OSError as exc:
            raise store_error(exc, name, "inspect the path of") from exc
        if size:
            self.check_space(name, size)
        return final
