"""Whole files held in memory (an inline PUT, a PUT-MANY), stored a batch at a time.

A small file's cost is its system calls and Python objects, not its bytes,
so a batch goes through the disk in two worker-thread hops with as few of
both as the checks and the crash guarantees allow:

1. **Write** (:func:`write_batch`): the root is opened once and each
   parent directory of the batch once, walking down from the root with
   ``O_NOFOLLOW`` (openat(2) style, no path resolution per file); free
   space is checked with one ``statvfs`` for the batch, each file
   verified (length, digest) and written to an unnamed file in its final
   directory (``O_TMPFILE``, :mod:`zfile.store.unnamed`; open, write,
   futimens, kept open; fchmod only when the umask would change its mode),
   or, past the process's budget of such descriptors or where the file
   system has none, to ``<root>/.zfile/tmp/<transfer>.part`` (closed once
   written).  A file written unnamed needs no ``lstat`` of its final name:
   its ``linkat`` refuses a taken name atomically, and only then is the
   name looked at (a symbolic link or a directory holding anything there
   is refused, an empty directory removed, a
   file replaced or, without clobber, refused as it exists); a named
   partial's final name is looked at before its write, as its rename
   would replace a symbolic link.  Then one ``syncfs(2)`` makes every file of the batch durable
   at once (see :func:`zfile.store.fs.syncfs` for its trade-off).
2. **Publish** (:class:`zfile.store.group_commit.Publisher`): the batch's
   commit intents in one catalog transaction; each unnamed file linked to
   its final name (``linkat``; a name that exists is replaced by a rename
   from the partials' directory) and each named partial renamed
   (``renameat``), relative to the directory descriptors; then one fsync
   per directory touched, or one ``syncfs`` when a file was linked (its
   inode's link count must be written too); and the rows in one more
   transaction, after which each file is acknowledged.

A path a parent walk cannot follow (a symbolic link inside the root, a file
where a directory belongs) takes the full check of
:meth:`zfile.store.layout.Layout.check_path`, which refuses what leaves the
root and allows what stays inside it, as for a streamed upload.  The
partials' names and the catalog's intents are those of every other upload,
so :mod:`zfile.store.recovery` finishes a batch cut short by a crash as it
finishes any inline upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from zfile.errors import BadName, Busy, IntegrityError, NameConflict, StoreError, ZfileError
from zfile.protocol import digest as digests
from zfile.protocol.events import Buffer, Entry
from zfile.protocol.names import quote_name
from zfile.store import unnamed
from zfile.store.batchdirs import Directories
from zfile.store.claims import Claims
from zfile.store.cleanup import uninterrupted
from zfile.store.fs import store_error, syncfs
from zfile.store.group_commit import Publisher, SyncFs
from zfile.store.layout import Layout, exists_error, remove_empty_dir

_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _read_umask() -> int:
    # The process's umask cannot be read without setting it: done once, at import.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class Staged:
    """One whole file of a batch, from its claim to its publication.

    It holds its partial's claim in the store's :class:`Claims` (so a
    streamed upload of the same file is Busy meanwhile) and is what the
    group commit publishes (:class:`zfile.store.group_commit.Sealed`).
    ``dir_fd`` is its final directory's descriptor once written, owned by
    the batch; ``base`` its final name's last component; ``file_fd`` the
    descriptor of its unnamed file until it is linked (-1 for a named
    partial); ``found`` true when its name was taken when looked at,
    False when free, None when not looked at (its link decides);
    ``stale`` true when a streamed upload's partial of the same transfer
    may be in the partials' directory (deleted before the write).
    """

    __slots__ = (
        "transfer",
        "name",
        "size",
        "mtime_ns",
        "mode",
        "peer",
        "clobber",
        "listed",
        "data",
        "digest",
        "dir_fd",
        "base",
        "part",
        "tmp_fd",
        "live",
        "file_fd",
        "found",
        "stale",
    )

    #: Its commit intent is a catalog row, written with its batch.
    intent_in_catalog = True
    #: A whole file leaves nothing to resume: its partial is never kept.
    kept = False
    #: The store's put_many, not the claim's release, tells of its publication.
    published = False
    offset = 0

    def __init__(
        self,
        transfer: str,
        name: str,
        size: int,
        mtime_ns: int,
        mode: int,
        peer: str,
        clobber: bool,
        data: Buffer,
        digest: bytes,
    ) -> None:
        self.transfer = transfer
        self.name = name
        self.size = size
        self.mtime_ns = mtime_ns
        self.mode = mode
        self.peer = peer
        self.clobber = clobber
        self.listed = False
        self.data = data
        self.digest = digest
        self.dir_fd = -1
        self.base = ""
        self.part = f"{transfer}.part"
        self.tmp_fd = -1
        self.live = True
        self.file_fd = -1
        self.found: bool | None = False
        self.stale = False

    async def suspend(self) -> None:
        """Nothing to keep: the store's close lets a batch in flight end on its own."""

    def publish_to(self, name: str, check_path: Callable[[str], Path]) -> set[Path | int | SyncFs]:
        """Link the unnamed file to its name, or rename the partial into its
        directory (``renameat`` relative to the partials' directory and
        :attr:`dir_fd`; ``link`` then ``unlink`` when it must not clobber);
        return what to make durable: the directory's descriptor to fsync, or
        its file system to sync after a link.  The path was checked by
        :func:`write_batch` against this same descriptor, so ``check_path``
        is not needed.  Exists; OSError."""
        if self.file_fd >= 0:
            return self._link()
        tmp_fd = self.tmp_fd
        if self.clobber:
            os.rename(self.part, self.base, src_dir_fd=tmp_fd, dst_dir_fd=self.dir_fd)
        else:
            # link() refuses an existing name atomically, unlike an exists-check then rename().
            try:
                os.link(self.part, self.base, src_dir_fd=tmp_fd, dst_dir_fd=self.dir_fd, follow_symlinks=False)
                os.unlink(self.part, dir_fd=tmp_fd)
            except FileExistsError:
                raise exists_error(self.name) from None
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS or _lexists(self.base, self.dir_fd):
                    raise
                os.rename(self.part, self.base, src_dir_fd=tmp_fd, dst_dir_fd=self.dir_fd)
        return {self.dir_fd}

    def _link(self) -> set[Path | int | SyncFs]:
        fd, self.file_fd = self.file_fd, -1
        try:
            if not self.found:
                try:
                    unnamed.link(fd, self.base, self.dir_fd)
                    return {SyncFs(self.dir_fd)}
                except FileExistsError:
                    if self.found is None:
                        _look(self)  # what holds the name decides: BadName, or Exists without clobber
                        if not self.found:  # an empty directory was in the way, and is gone
                            unnamed.link(fd, self.base, self.dir_fd)
                            return {SyncFs(self.dir_fd)}
                    if not self.clobber:
                        raise exists_error(self.name) from None
            elif not self.clobber:
                raise exists_error(self.name)
            # Replacing a file: the name is taken, so the new one gets a partial's name to rename from.
            try:
                unnamed.link(fd, self.part, self.tmp_fd)
            except FileExistsError:  # a streamed upload's partial of the same file, no longer claimed
                os.unlink(self.part, dir_fd=self.tmp_fd)
                unnamed.link(fd, self.part, self.tmp_fd)
            os.rename(self.part, self.base, src_dir_fd=self.tmp_fd, dst_dir_fd=self.dir_fd)
            return {SyncFs(self.dir_fd)}
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the unnamed file if it is still open (it then vanishes)."""
        if self.file_fd >= 0:
            fd, self.file_fd = self.file_fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _look(f: Staged) -> None:
    """Look at what holds ``f``'s final name (one ``lstat`` relative to its
    directory's descriptor) and set :attr:`Staged.found`.  BadName for a
    symbolic link or a directory that holds anything (an empty one is
    removed: the name is free); Exists when the name is taken and ``f``
    must not clobber; OSError."""
    try:
        mode = os.stat(f.base, dir_fd=f.dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        mode = 0
    if stat.S_ISLNK(mode):
        raise BadName(f"{quote_name(f.name)} is a symbolic link in the store")
    if stat.S_ISDIR(mode):
        if not remove_empty_dir(f.base, f.dir_fd):
            raise NameConflict(f"{quote_name(f.name)} is a directory in the store")
        mode = 0
    if not f.clobber and mode:
        raise exists_error(f.name)
    f.found = mode != 0


def _check(layout: Layout, dirs: Directories, f: Staged) -> None:
    """The path checks of :meth:`Layout.check_inline` for ``f`` that need
    no look at its final name, relative to its directory's descriptor (set
    on ``f``); the name itself is looked at by its write or its link
    (:func:`_look`).  BadName, Exists; OSError."""
    name = f.name
    # A character is at most 4 bytes of UTF-8: most names need no encoding to pass.
    short = layout.real_root_bytes + 2 + 4 * len(name) <= layout.path_max
    length = 0 if short else layout.real_root_bytes + 1 + len(name.encode("utf-8")) + 1
    if length > layout.path_max:
        raise BadName(
            f"{quote_name(name)} would make a path of {length} bytes in the store, over the "
            f"{layout.path_max} bytes of PATH_MAX; use a shorter name"
        )
    parent, _, base = name.rpartition("/")
    if layout.name_max < 255 and any(len(p.encode()) > layout.name_max for p in name.split("/")):
        raise BadName(f"{quote_name(name)} has a component longer than {layout.name_max} bytes")
    f.dir_fd = dirs.parent(name, parent)
    f.base = base
    if not f.clobber and f.listed:
        raise exists_error(name)
    # Only this batch's files can be in a directory it made, and linkat (or
    # link for no-clobber) refuses a taken name atomically.
    f.found = False if parent in dirs.made else None


def _write(f: Staged, tmp_fd: int, algo: str, unnamed_ok: bool) -> bytes:
    """Verify ``f``'s bytes and write them to an unnamed file in its
    directory when ``unnamed_ok`` (left open in ``f.file_fd``), else to its
    partial, stamped with its mode and mtime; return the digest.
    IntegrityError; OSError."""
    view = memoryview(f.data).cast("B")
    if view.nbytes != f.size:
        raise IntegrityError(f"{quote_name(f.name)} was declared {f.size} bytes but {view.nbytes} arrived")
    hasher = digests.new_hasher(algo)
    hasher.update(view)
    actual = hasher.digest()
    if not hmac.compare_digest(actual, bytes(f.digest)):
        raise IntegrityError(f"the digest of {quote_name(f.name)} does not match the bytes received")
    if f.stale:
        # A streamed upload's partial of the same file, no longer claimed: it
        # must not be resumed (its state file beside new bytes) nor outlive this upload.
        for stale in (f"{f.transfer}.json", f.part):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale, dir_fd=tmp_fd)
    fd = -1
    if unnamed_ok:
        try:
            fd = unnamed.create(f.dir_fd, f.mode)
        except OSError as exc:
            if exc.errno not in unnamed.UNSUPPORTED:
                raise
    named = fd < 0
    if named:
        if f.found is None:
            _look(f)  # before the write: the partial's rename would replace a symbolic link
        try:
            fd = os.open(f.part, _CREATE, f.mode, dir_fd=tmp_fd)
        except FileExistsError:  # a partial no longer claimed, of the same file
            os.unlink(f.part, dir_fd=tmp_fd)
            fd = os.open(f.part, _CREATE, f.mode, dir_fd=tmp_fd)
    try:
        while view:
            view = view[os.write(fd, view) :]
        if f.mode & _UMASK:
            os.fchmod(fd, f.mode)
        os.utime(fd, ns=(f.mtime_ns, f.mtime_ns))
    except BaseException:
        os.close(fd)
        raise
    if named:
        os.close(fd)
    else:
        f.file_fd = fd
    return actual


def write_batch(layout: Layout, dirs: Directories, batch: Sequence[Staged], algo: str) -> list[ZfileError | bytes]:
    """Check, verify and write every file of ``batch``, then make them
    durable with one ``syncfs``; for each in order its verified digest or
    the error that refused it (BadName, Exists, NoSpace, IntegrityError,
    StoreError), in the order of a streamed upload's checks.  Blocking: one
    worker-thread hop for the batch."""
    results: list[ZfileError | bytes] = []
    try:
        dirs.open()
    except OSError as exc:
        err = store_error(exc, batch[0].name, "open the store's directories for")
        if not isinstance(err, Busy):  # nothing of the batch's own is at fault: name the directories
            err = StoreError(
                f"could not open the store's root {layout.real_root} or its partials' directory: {exc.strerror or exc}"
            )
        return [err] * len(batch)
    checked: list[bool] = []
    for f in batch:
        try:
            _check(layout, dirs, f)
            checked.append(True)
            results.append(b"")
        except ZfileError as exc:
            checked.append(False)
            results.append(exc)
        except OSError as exc:
            checked.append(False)
            results.append(store_error(exc, f.name, "inspect the path of"))
    need = sum(f.size for f, ok in zip(batch, checked, strict=True) if ok)
    if need:
        free = -1
        with contextlib.suppress(OSError):
            fs = os.statvfs(dirs.root_fd)
            free = fs.f_bavail * fs.f_frsize
        if free < need:  # short of room (or unknown): each file on its own, as a lone upload would be
            for k, f in enumerate(batch):
                if checked[k] and f.size:
                    try:
                        layout.check_space(f.name, f.size)
                    except ZfileError as exc:
                        checked[k] = False
                        results[k] = exc
    tmp_fd = dirs.tmp_fd
    written = 0
    unnamed_left = dirs.reserve(sum(checked))
    for k, f in enumerate(batch):
        if not checked[k]:
            continue
        f.tmp_fd = tmp_fd
        try:
            results[k] = _write(f, tmp_fd, algo, unnamed_left > 0)
            # Named although it might have been unnamed: not here, or out of descriptors, for the rest too.
            unnamed_left = unnamed_left - 1 if f.file_fd >= 0 else 0
            written += 1
        except ZfileError as exc:
            results[k] = exc
        except OSError as exc:
            results[k] = store_error(exc, f.name, "store")
            with contextlib.suppress(OSError):
                os.unlink(f.part, dir_fd=tmp_fd)
    if written:
        try:
            syncfs(tmp_fd)
        except OSError as exc:
            err = store_error(exc, batch[0].name, "store")
            results = [err if isinstance(r, bytes) else r for r in results]
    return results


def entry_ids(count: int) -> list[str]:
    """``count`` random entry ids: what ``uuid.uuid4().hex`` gives (RFC 4122
    version 4: 122 random bits, the version and variant bits set), from one
    ``os.urandom`` call and without a UUID object per file."""
    raw = bytearray(os.urandom(16 * count))
    for k in range(6, 16 * count, 16):
        raw[k] = (raw[k] & 0x0F) | 0x40  # version 4
        raw[k + 2] = (raw[k + 2] & 0x3F) | 0x80  # variant RFC 4122
    text = raw.hex()
    return [text[k : k + 32] for k in range(0, 32 * count, 32)]


async def store_batch(
    layout: Layout, claims: Claims, publisher: Publisher, batch: Sequence[Staged], algo: str
) -> list[Entry | ZfileError]:
    """Write, publish and record the claimed files of ``batch``
    (:func:`write_batch`, then the group commit) and release their claims;
    for each in order its entry or its error.  A file that was not
    published leaves no partial behind.  A caller cancelled while the batch
    waits for the group commit publishes none of the files not yet taken
    into a commit; the clean-up then waits for the hops still using the
    batch's descriptors, so none is closed under them."""
    dirs = Directories(layout)
    results: list[Entry | ZfileError | bytes] = []
    writing: asyncio.Future[list[ZfileError | bytes]] | None = None
    publishing = False
    try:
        writing = asyncio.ensure_future(asyncio.to_thread(write_batch, layout, dirs, batch, algo))
        results = list(await asyncio.shield(writing))
        ready: list[tuple[int, Staged, Entry]] = []
        ids = entry_ids(len(batch))
        received = time.time()
        for k, digest in enumerate(results):
            if isinstance(digest, bytes):
                f = batch[k]
                entry = Entry(f.name, f.size, f.mtime_ns, f.mode, algo, digest, received, ids[k], f.peer)
                ready.append((k, f, entry))
        publishing = True
        failures = await publisher.publish([(f, e) for _, f, e in ready]) if ready else []
        publishing = False
        for (k, f, entry), failure in zip(ready, failures, strict=True):
            if failure is None:
                f.live = False  # renamed into place: nothing left to delete
                results[k] = entry
            elif isinstance(failure, OSError):
                results[k] = store_error(failure, f.name, "store")
            elif isinstance(failure, ZfileError):
                results[k] = failure
            else:
                raise failure
    finally:
        await uninterrupted(_clean_up(layout, claims, publisher, batch, dirs, writing, publishing))
    return results  # type: ignore[return-value]


async def _clean_up(
    layout: Layout,
    claims: Claims,
    publisher: Publisher,
    batch: Sequence[Staged],
    dirs: Directories,
    writing: asyncio.Future | None,
    publishing: bool,
) -> None:
    if writing is not None and not writing.done():
        await asyncio.wait([writing])  # the write hop's thread still uses the descriptors
    if publishing:
        # Cancelled while its files were queued: a group commit that took them is over once its lock is free.
        async with publisher.lock:
            pass
    # Whatever was not published leaves no partial, as an aborted upload leaves none.
    leftovers = [f for f in batch if f.live]
    if leftovers:
        with contextlib.suppress(OSError, StoreError):
            await asyncio.to_thread(_discard, layout.tmp, leftovers)
    dirs.close()
    for f in batch:
        f.live = False
        f.data = b""
        claims.release(f.transfer, f)


def _discard(tmp: Path, files: list[Staged]) -> None:
    """Close the unnamed files of ``files`` and delete their named partials."""
    for f in files:
        f.close()
    for f in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp / f.part)
