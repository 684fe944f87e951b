"""``--delete``, as rsync's: once a tree is synced, remove what the
destination holds under that same tree and the source does not.

Only inside the trees named on the command line (a directory given to
``send``, a prefix given to ``get``); a file named on its own deletes
nothing.  What the filters exclude is never deleted (rsync's default,
without ``--delete-excluded``).  The caller runs the deletions only after
every transfer of the run succeeded: a run with a failure deletes nothing.

- ``get``: :func:`local_deletions` finds the regular files under each
  tree's local directory that the daemon no longer holds.  Only what zfile
  would have written is a candidate: a regular file with a UTF-8 name that
  is not a download's temp file (``.NAME.zfile-part``, kept for resume);
  symbolic links (never followed), special files and names that are not
  UTF-8 stay, each named with its reason (rsync would delete them, but
  zfile never writes one), and nothing outside the output directory is
  ever looked at.
  :func:`delete_local` then removes the directories that this run emptied
  (rsync removes a directory the source does not have; zfile has no
  directories, so a directory goes when its last file went), never one that
  was empty before or still holds anything, nor the tree's own directory.
- ``send``: :func:`remote_deletions` finds the stored files under each
  tree that the local tree does not have (not even as an entry send skips,
  such as a symbolic link), and :func:`delete_remote` removes them with the
  daemon's remove request.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from zfile.client.client import Client
from zfile.client.filters import NO_FILTER, Filter
from zfile.client.partfiles import is_part_name
from zfile.client.plan import DownloadPlan, UploadPlan, shown
from zfile.errors import ErrorCode, LocalFileError, ZfileError


@dataclass(frozen=True, slots=True)
class Deleted:
    """One file ``--delete`` removed (``error`` None) or failed to remove:
    ``name`` the stored name (send) or the local path, :func:`shown` (get)."""

    name: str
    error: ZfileError | None = None


def _is_utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class LocalDeletions:
    """What ``--delete`` finds in a download's local trees: the files to
    delete, and the entries the source lacks that it leaves, each with why
    (``"a symbolic link"``...), both sorted by path."""

    doomed: list[Path]
    kept: list[tuple[Path, str]]


def _not_deleted(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    kind = "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
    return f"a {kind}"


def local_deletions(plan: DownloadPlan, filters: Filter = NO_FILTER) -> LocalDeletions:
    """The local files under ``plan.trees`` that the plan does not write and
    that are zfile's to delete, and the entries there that are not zfile's
    (module docstring).  Blocking (a directory walk): run it in a worker
    thread."""
    keep = {os.path.abspath(dest) for _, dest in plan.files}
    found: set[Path] = set()
    kept: dict[Path, str] = {}
    for _, root in plan.trees:
        # A tree's directory that is a link leads out of the output directory: not entered.
        if root.is_symlink() or not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):  # never follows links
            here = Path(dirpath)
            rel_dir = here.relative_to(root).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir

            def rel(name: str, rel_dir: str = rel_dir) -> str:
                return f"{rel_dir}/{name}" if rel_dir else name

            entered = []
            for d in dirnames:
                if not _is_utf8(d):
                    kept[here / d] = "a directory whose name is not UTF-8"
                elif filters.matches(rel(d), is_dir=True):
                    continue
                elif os.path.islink(here / d):  # os.walk lists a link to a directory with the directories
                    kept[here / d] = "a symbolic link"
                else:
                    entered.append(d)
            dirnames[:] = entered  # pruned: an excluded directory is left whole
            for name in filenames:
                path = here / name
                if is_part_name(name) or (_is_utf8(name) and filters.matches(rel(name))):
                    continue
                try:
                    mode = path.lstat().st_mode
                except OSError:
                    continue
                if os.path.abspath(path) in keep:
                    continue
                if not _is_utf8(name):
                    kept[path] = "a file whose name is not UTF-8"
                elif not stat.S_ISREG(mode):
                    kept[path] = _not_deleted(mode)
                else:
                    found.add(path)
    return LocalDeletions(sorted(found), sorted(kept.items()))


def delete_local(paths: Sequence[Path], roots: Sequence[Path]) -> list[Deleted]:
    """Unlink ``paths`` (from :func:`local_deletions`), then remove the
    directories this emptied, up to but not including the ``roots`` they are
    under.  One :class:`Deleted` per path, in order; a file that cannot be
    removed is one with a :class:`LocalFileError`, and the others go on.
    Blocking: run it in a worker thread."""
    done: list[Deleted] = []
    emptied: set[Path] = set()
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass  # gone already: what --delete wanted
        except OSError as exc:
            done.append(Deleted(shown(path), LocalFileError(f"cannot delete {shown(path)}: {exc.strerror}")))
            continue
        done.append(Deleted(shown(path)))
        emptied.add(path.parent)
    tops = {os.path.abspath(r) for r in roots}
    # Deepest first, so that a parent is tried once its children are gone.
    pending = sorted(emptied, key=lambda p: len(p.parts), reverse=True)
    while pending:
        directory = pending.pop(0)
        if os.path.abspath(directory) in tops or not any(
            os.path.abspath(directory).startswith(t + os.sep) for t in tops
        ):
            continue
        try:
            directory.rmdir()
        except OSError:
            continue  # not empty (or not ours to remove): it stays
        parent = directory.parent
        if parent not in pending:
            pending.append(parent)
            pending.sort(key=lambda p: len(p.parts), reverse=True)
    return done


async def remote_deletions(client: Client, plan: UploadPlan, filters: Filter = NO_FILTER) -> list[str]:
    """The stored names under ``plan.trees`` that the local trees do not
    have, sorted: not in the plan, not excluded by ``filters`` (matched
    relative to the tree), not a temp file's name, and with no entry at
    the same place in the local tree (a link or special file send skipped
    is still the source's).  Raises the client's errors."""
    keep = {name for _, name, _ in plan.files} | set(plan.excluded)
    candidates: list[tuple[str, Path]] = []
    for tree, root in plan.trees:
        prefix = f"{tree}/" if tree else ""
        async for entry in client.list(prefix):
            below = entry.name[len(prefix) :]
            if entry.name in keep or is_part_name(PurePosixPath(below).name) or filters.excluded(below):
                continue
            candidates.append((entry.name, root.joinpath(*PurePosixPath(below).parts)))
    present = await asyncio.to_thread(lambda: [os.path.lexists(path) for _, path in candidates])
    return sorted({name for (name, _), there in zip(candidates, present, strict=True) if not there})


async def delete_remote(client: Client, names: Sequence[str]) -> list[Deleted]:
    """Remove the stored ``names`` on the daemon, one :class:`Deleted` each
    in order; a name already gone counts as deleted, and a request the
    daemon refuses whole (or a lost connection) fails every name, never
    raised (REMOVE, docs/protocol.md)."""
    if not names:
        return []
    try:
        removals = await client.remove(list(names))
    except ZfileError as exc:  # the request refused whole, or the link lost: each name failed
        return [Deleted(name, exc) for name in names]
    done = []
    for removal in removals:
        error = removal.error
        if error is not None and error.code is ErrorCode.NOT_FOUND:
            error = None
        done.append(Deleted(removal.name, error))
    return done


__all__ = ["Deleted", "LocalDeletions", "delete_local", "delete_remote", "local_deletions", "remote_deletions"]
