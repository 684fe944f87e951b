"""Planning a transfer of many files: what an upload of paths and a
download of names and prefixes will do, before anything moves.

Naming follows ``scp -r``: ``send photos/`` stores ``photos/<relative
path>``; ``get photos/`` writes ``OUT/photos/<relative path>``; ``get
a/b.bin`` writes ``OUT/b.bin``.  The transfers themselves run in
:mod:`zfile.client.tree`.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from zfile.client.client import Client, Result
from zfile.client.filters import NO_FILTER, Filter
from zfile.client.partfiles import is_part_name
from zfile.errors import BadName, ErrorCode, LocalFileError, NameCollision, RemoteError, Skipped, ZfileError
from zfile.protocol.codec import MAX_LIST_PAGE
from zfile.protocol.events import Entry
from zfile.protocol.limits import MTIME_MAX_NS, MTIME_MIN_NS, mtime_outside
from zfile.protocol.names import check_name


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one file: ``result`` on success, else ``error``."""

    name: str
    result: Result | None = None
    error: ZfileError | None = None


@dataclass(frozen=True, slots=True)
class UploadPlan:
    """What an upload of files and directories will do.

    ``files`` holds (local path, stored name, size in bytes) for each regular
    file to send, the path a ``str`` (the walked directory's joined with the
    file's name, as :func:`os.scandir` gives it, with no
    :class:`~pathlib.Path` built per file); ``skipped`` one
    :class:`Outcome` per local entry that will
    not be sent, its ``name`` the local path (:func:`shown`) and its
    ``error`` a :class:`~zfile.errors.Skipped` saying why.  ``excluded``
    holds the stored names the filters left out (a directory once, nothing
    below it read); ``trees`` one ``(stored name, local path)`` per
    directory named on the command line (the name ``""`` for the root of
    the store, or the prefix itself, with ``relative``), the trees
    ``--delete`` works in; ``unread`` the
    local paths that could not be read (a directory, an entry that cannot
    be stat'ed), whose absence says nothing about the source: ``--delete``
    then deletes nothing (rsync's "IO error encountered").
    """

    files: list[tuple[str, str, int]]
    skipped: list[Outcome]
    excluded: list[str] = field(default_factory=list)
    trees: list[tuple[str, Path]] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)
    #: Each file's mtime in nanoseconds when the plan was made, by stored
    #: name: the quick check compares these (as rsync's file list does)
    #: rather than stat-ing every file again.  A name missing here is
    #: stat'ed when compared.
    mtime_ns: dict[str, int] = field(default_factory=dict)


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` fit to print: bytes that are not UTF-8 as ``\\xNN``,
    characters that are not printable (controls, a newline) as backslash
    escapes, so that no name can garble or split a line, and a backslash
    itself as ``\\\\``, so that no name shows as another (``a\\nb``, four
    characters, against ``a``, a newline, ``b``)."""
    text = os.fsencode(path).decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:  # nearly every name: nothing to escape
        return text
    return "".join(map(_shown_char, text))


def _shown_char(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if "\udc80" <= ch <= "\udcff":  # a byte that is not UTF-8, kept by surrogateescape
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")


def _mtime_skip(mtime_ns: int) -> str:
    return f"{mtime_outside(mtime_ns)}; set it with touch(1) to send it"


def plan_upload(
    paths: Sequence[str | os.PathLike[str]],
    *,
    relative: bool = False,
    copy_links: bool = False,
    prefix: str = "",
    filters: Filter = NO_FILTER,
    base: str | os.PathLike[str] | None = None,
) -> UploadPlan:
    """Expand files and directories into the files to send and the entries skipped.

    A file is stored under its basename, a directory's files as ``<dir's
    basename>/<relative path>``; with ``relative`` each path is stored as
    given instead (``a/x.txt`` as ``a/x.txt``, a leading ``/`` dropped, as
    ``rsync -R`` does).  Paths named here are followed when they are
    symbolic links; below them only regular files are sent: a symbolic link
    is skipped unless ``copy_links`` (then what it points to is sent, a
    dangling link or one that loops is still skipped), and so are special
    files (FIFOs, sockets, devices), empty or unreadable directories, names
    that are not valid UTF-8, and the temp files of unfinished downloads
    (``.NAME.zfile-part`` and its ``.json``; see :class:`UploadPlan`).

    With ``base`` (``--files-from``: ``paths`` are its listed paths joined
    to it) each path is stored by its path relative to ``base``, as rsync's
    ``--files-from`` does; ``relative`` is then implied.

    ``prefix`` (``"datasets"`` or ``"datasets/"``, the same) puts every
    stored name under that directory of the daemon's root.  ``filters``
    (:class:`~zfile.client.filters.Filter`) match each path relative to the
    tree it was found in: a directory's entries by their path below it, a
    file named on its own by its basename; what they exclude is in the
    plan's ``excluded``.

    Raises :class:`NameCollision` when two paths would be stored under one
    name, :class:`BadName` for a ``prefix`` that is not a valid stored name,
    and :class:`LocalFileError` for a path that does not exist or that
    ``relative`` cannot store (one that climbs out with ``..``).  A file
    whose mtime a message cannot carry (before 1677 or after 2262, see
    :func:`~zfile.protocol.limits.mtime_outside`) is skipped, saying so:
    zfile keeps mtimes to the nanosecond and never stores another one.
    """
    files: list[tuple[str, str, int]] = []
    mtimes: dict[str, int] = {}
    skipped: list[Outcome] = []
    excluded: list[str] = []
    trees: list[tuple[str, Path]] = []
    unread: list[str] = []
    top = normalize_prefix(prefix)
    filtered = filters is not NO_FILTER

    def skip(path: str | Path, why: str, io_error: bool = False) -> None:
        skipped.append(Outcome(shown(path), error=Skipped(why)))
        if io_error:
            unread.append(shown(path))

    def walk(directory: str, prefix: str, ancestors: frozenset[tuple[int, int]], rel: str) -> None:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skip(directory, f"cannot read the directory: {exc.strerror}", io_error=True)
            return
        if not entries:
            skip(directory, "empty directory (zfile stores files, not directories)")
            return
        # The per-file cost of a large tree is here: one lstat(2) each (the
        # DirEntry's, cached), no other system call for a regular file, and
        # the DirEntry's own path string (a Path joined to the directory's
        # cost as much as the lstat).
        here = directory == "."  # the walk of "." names its files as Path did: "x", not "./x"
        for entry in entries:
            base = entry.name
            path = base if here else entry.path
            if not (base.isascii() or _is_utf8(base)):
                is_dir = entry.is_dir()
                why = "the name is not valid UTF-8" + (" (nothing below it is sent)" if is_dir else "")
                skip(path, why, io_error=is_dir)
                continue
            try:
                if entry.is_symlink():
                    try:
                        st = os.stat(path)
                    except OSError as exc:
                        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                            skip(path, "dangling symbolic link")
                        elif exc.errno == errno.ELOOP:
                            skip(path, "symbolic link loop (it leads back to itself)")
                        else:  # only an error where the link was to be followed
                            skip(path, f"cannot follow the symbolic link: {exc.strerror}", io_error=copy_links)
                        continue
                    if not copy_links:
                        skip(path, "symbolic link (-L/--copy-links sends what it points to)")
                        continue
                else:
                    st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                skip(path, f"cannot read: {exc.strerror}", io_error=True)
                continue
            name = f"{prefix}/{base}" if prefix else base
            regular = stat.S_ISREG(st.st_mode)
            if filtered and filters.matches(f"{rel}/{base}" if rel else base, is_dir=stat.S_ISDIR(st.st_mode)):
                excluded.append(name)
                continue
            if regular:
                if base[0] == "." and is_part_name(base):
                    skip(path, "an unfinished download's temp file, kept for `zfile get` to resume")
                    continue
                if not MTIME_MIN_NS <= st.st_mtime_ns <= MTIME_MAX_NS:
                    skip(path, _mtime_skip(st.st_mtime_ns))
                    continue
                files.append((path, name, st.st_size))
                mtimes[name] = st.st_mtime_ns
                continue
            visit(path, name, st, ancestors, f"{rel}/{base}" if rel else base)

    def visit(path: str, name: str, st: os.stat_result, ancestors: frozenset[tuple[int, int]], rel: str) -> None:
        if stat.S_ISREG(st.st_mode) and not MTIME_MIN_NS <= st.st_mtime_ns <= MTIME_MAX_NS:
            skip(path, _mtime_skip(st.st_mtime_ns))
        elif stat.S_ISREG(st.st_mode):
            files.append((path, name, st.st_size))
            mtimes[name] = st.st_mtime_ns
        elif stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                skip(path, "symbolic link loop (it leads to a directory that contains it)")
            else:
                walk(path, name, ancestors | {key}, rel)
        else:
            skip(path, f"{_kind(st.st_mode)} (only regular files are sent)")

    for raw in paths:
        path = Path(raw)
        st = _stat_root(path)
        if st is None:
            skip(path, "dangling symbolic link")
            continue
        if base is None:
            name = _root_name(path, st, relative)
        else:
            name = _relative_name(Path(os.path.relpath(path, base)), "--files-from", shown(base))
        if not _is_utf8(name):
            skip(path, "the name is not valid UTF-8", io_error=stat.S_ISDIR(st.st_mode))
            continue
        name = "/".join(p for p in (top, name) if p)
        if stat.S_ISDIR(st.st_mode):
            if (name, path) not in trees:
                trees.append((name, path))
        elif filters.matches(PurePosixPath(name).name):
            excluded.append(name)
            continue
        visit(str(path), name, st, frozenset(), "")
    return UploadPlan(_refuse_collisions(files), skipped, excluded, trees, unread, mtimes)


def _stat_root(path: Path) -> os.stat_result | None:
    # A path named on the command line, followed if a link; None for a dangling link.
    try:
        return path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return None
        raise LocalFileError(f"{shown(path)}: no such file or directory") from None
    except OSError as exc:
        raise LocalFileError(f"cannot read {shown(path)}: {exc.strerror}") from None


def _root_name(path: Path, st: os.stat_result, relative: bool) -> str:
    # A path named on the command line: its relative path with -R, else its basename
    # (a directory's resolved, so that "." and ".." name the directory they are).
    if relative:
        return _relative_name(path)
    return path.resolve().name if stat.S_ISDIR(st.st_mode) else path.name


def listed_paths(data: bytes, *, nul: bool = False) -> list[str]:
    """The paths a ``--files-from`` list names, in order, as rsync reads
    one: one a line (``nul``: each ended by a NUL byte, as ``find -print0``
    writes them); blank lines, and lines that start with ``#`` or ``;``,
    are left out unless ``nul``; a leading ``/`` is dropped (a listed path
    is relative to the directory it is read against).  Bytes that are not
    UTF-8 are kept as the file system's encoding does (``os.fsdecode``)."""
    entries = data.split(b"\0") if nul else data.splitlines()
    if not nul:
        entries = [e for e in entries if e.strip() and not e.startswith((b"#", b";"))]
    return [os.fsdecode(e.lstrip(b"/")) or "." for e in entries if e]


def normalize_prefix(prefix: str) -> str:
    """A ``--prefix`` as a stored directory name: ``"datasets/"`` and
    ``"datasets"`` are both ``"datasets"``, ``""`` is the root.  Raises
    :class:`BadName` for one that is not a valid stored name (absolute,
    ``..``, control characters; :func:`~zfile.protocol.names.check_name`)."""
    if not prefix:
        return ""
    stem = prefix[:-1] if prefix.endswith("/") else prefix
    if not stem:
        raise BadName(f"the prefix {prefix!r} names no directory (it must be relative, such as datasets/)")
    try:
        return check_name(stem)
    except BadName as exc:
        raise BadName(f"--prefix: {exc}") from None


def _is_utf8(name: str) -> bool:
    # Undecodable bytes reach Python as lone surrogates (PEP 383), which UTF-8 cannot encode.
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _relative_name(path: Path, option: str = "--relative", below: str = "the current directory") -> str:
    # "" for the current directory itself: its contents keep their relative paths.
    parts = [p for p in PurePosixPath(os.path.normpath(path)).parts if p not in ("/", ".")]
    if ".." in parts:
        raise LocalFileError(f"{option} cannot store '{shown(path)}': it is not below {below}")
    return "/".join(parts)


def _refuse_collisions(files: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """``files`` without repeats of one path under one name; raises NameCollision."""
    first: dict[str, str] = {}
    unique: list[tuple[str, str, int]] = []
    clashes: list[str] = []
    for path, name, size in files:
        other = first.setdefault(name, path)
        if other is path:
            unique.append((path, name, size))
        elif os.path.abspath(other) != os.path.abspath(path):
            clashes.append(f"'{shown(other)}' and '{shown(path)}' would both be stored as '{shown(name)}'")
        # else the same file named twice: it is sent once
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise NameCollision(
            f"{clashes[0]}{more}; nothing was sent: rename one, or use --relative (-R) to store each path as given"
        )
    return unique


@dataclass(frozen=True, slots=True)
class DownloadPlan:
    """What a download of names and prefixes will do.

    ``files`` holds (catalog entry, local path) for each file to fetch;
    ``missing`` one :class:`Outcome` per spec that matched nothing (its
    ``error`` a :class:`RemoteError`, code not-found); ``skipped`` one per
    stored file that will not be fetched (its ``error`` a
    :class:`~zfile.errors.Skipped`): one named like a download's temp file
    (:func:`~zfile.client.partfiles.is_part_name`), whose local name would be
    taken for a partial.  ``excluded`` holds the stored names the filters
    left out; ``trees`` one ``(stored prefix, local directory)`` per spec
    that named a directory (``""`` for the whole store), the trees
    ``--delete`` works in.
    """

    files: list[tuple[Entry, Path]]
    missing: list[Outcome]
    skipped: list[Outcome]
    excluded: list[str] = field(default_factory=list)
    trees: list[tuple[str, Path]] = field(default_factory=list)


async def plan_download(
    client: Client, specs: Sequence[str], out: Path, *, filters: Filter = NO_FILTER
) -> DownloadPlan:
    """Resolve names and prefixes on the daemon into what to fetch where.

    ``spec`` naming a stored file maps to ``out/<basename>``; ``spec`` ending
    in ``/`` or naming a directory maps everything under it to
    ``out/<last component>/<relative path>``.  A spec that matches nothing
    is reported in the plan's ``missing`` and the others go on.
    ``filters`` match each name relative to its spec (its path below the
    prefix, or a file's basename); what they exclude is in ``excluded``.
    Raises :class:`BadName` when the daemon returns a name that would escape
    ``out``, and :class:`TransportError`.
    """
    files: list[tuple[Entry, Path]] = []
    missing: list[Outcome] = []
    skipped: list[Outcome] = []
    excluded: list[str] = []
    trees: list[tuple[str, Path]] = []
    for spec in specs:
        stem = spec.rstrip("/")
        # Names are joined as strings, not PurePosixPaths: a tree of 10,000
        # entries spent most of its planning parsing paths.  check_name below
        # makes each one a plain relative POSIX name first.
        base = stem.rsplit("/", 1)[-1]
        found = tree = False
        # The protocol's most entries a page: a tree of 10,000 files in one round trip.
        async for entry in client.list(stem, page_size=MAX_LIST_PAGE):
            if entry.name == stem and not spec.endswith("/"):
                rel = below = base
            elif entry.name.startswith(stem + "/") or not stem:
                below = entry.name[len(stem) + 1 :] if stem else entry.name
                rel = f"{base}/{below}" if stem else below
                tree = True
            else:
                continue
            # The daemon's names are input too: never write outside `out`.
            check_name(rel)
            check_name(entry.name)
            found = True
            if filters.excluded(below):
                excluded.append(entry.name)
                continue
            if is_part_name(rel.rsplit("/", 1)[-1]):
                why = "its name is that of a download's temp file (.NAME.zfile-part), which get keeps for resume"
                skipped.append(Outcome(shown(entry.name), error=Skipped(why)))
                continue
            files.append((entry, out / rel))
        if tree:
            trees.append((stem, out / base if stem else out))
        if not found:
            error = RemoteError("no such file or directory on the daemon", code=ErrorCode.NOT_FOUND)
            missing.append(Outcome(shown(spec), error=error))
    return DownloadPlan(files, missing, skipped, excluded, trees)


__all__ = [
    "DownloadPlan",
    "Outcome",
    "UploadPlan",
    "listed_paths",
    "normalize_prefix",
    "plan_download",
    "plan_upload",
    "shown",
]
