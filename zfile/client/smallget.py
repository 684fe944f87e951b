"""Writing the files of a GET-MANY reply: many small downloads, one hop.

A small file's download costs its round trips and thread hops, not its
bytes.  :func:`write_wholes` takes every file of one
:class:`~zfile.protocol.events.GetManyOk` and, in one worker-thread hop,
gives each the guarantees a streamed download has: its bytes are checked
against the daemon's digest before anything is written, go to the temp file
``.NAME.zfile-part`` beside the destination, get their mode and mtime, are
fsynced, and only then renamed to the destination (atomic rename).  The
batch is written first and its writeback started for all files at once, then
each file is fsynced, so that the first fsync's disk flush carries the
others' blocks too (as the daemon's PUT-MANY does).  A file that fails
verification or cannot be written is reported on its own and nothing of it
is left under its final name; the others go on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from zfile.errors import IntegrityError, LocalFileError, ZfileError
from zfile.fileio.dirs import make_parents
from zfile.fileio.writeback import start_all
from zfile.protocol.digest import new_hasher
from zfile.protocol.events import GotFile


def write_wholes(files: Sequence[tuple[GotFile, Path, Path, Path]]) -> list[ZfileError | None]:
    """Write each ``(file, dest, part, state)``: ``file`` is a GET-MANY
    result that came whole, ``dest`` its destination, ``part`` and
    ``state`` the temp file and resume state file of a download to ``dest``
    (:func:`zfile.client.partfiles.part_paths`; a state file left by an
    interrupted streamed download of it is removed once ``dest`` is in
    place).  Returns, per file, None when ``dest`` now holds it, else
    IntegrityError (digest mismatch: nothing written) or LocalFileError.
    Blocking: run it in a worker thread.
    """
    results: list[ZfileError | None] = [None] * len(files)
    written: list[tuple[int, int]] = []  # (index, fd) of files whose bytes are in their temp file
    made: set[Path] = set()
    try:
        for k, (got, dest, part, _) in enumerate(files):
            try:
                hasher = new_hasher(got.algo)
            except ZfileError as exc:  # an algorithm this side does not implement
                results[k] = IntegrityError(f"{dest}: cannot verify the daemon's reply: {exc}")
                continue
            hasher.update(got.data)
            if hasher.digest() != got.digest:
                results[k] = IntegrityError(f"{dest}: digest mismatch in the daemon's reply; nothing was written")
                continue
            try:
                if dest.parent not in made:
                    make_parents(dest)
                    made.add(dest.parent)
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                results[k] = LocalFileError.writing(dest, exc)
                continue
            written.append((k, fd))
            try:
                view = memoryview(got.data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, got.mode)
                os.utime(fd, ns=(got.mtime_ns, got.mtime_ns))
            except OSError as exc:
                results[k] = LocalFileError.writing(dest, exc)
        start_all([fd for k, fd in written if results[k] is None])
        for k, fd in written:
            if results[k] is None:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    results[k] = LocalFileError.writing(files[k][1], exc)
    finally:
        for _, fd in written:
            os.close(fd)
    for k, _fd in written:
        _, dest, part, state = files[k]
        if results[k] is None:
            try:
                os.replace(part, dest)
                if os.path.lexists(state):
                    os.unlink(state)
            except OSError as exc:
                results[k] = LocalFileError.writing(dest, exc)
        if results[k] is not None:
            try:
                os.unlink(part)
            except OSError:
                pass
    return results


__all__ = ["write_wholes"]
