"""The directories a download's files go into, made as ``mkdir -p`` makes them.

``Path.mkdir(parents=True)`` reports a file where a directory must go as
``File exists`` or ``Not a directory``, naming neither which component is in
the way nor why; :func:`make_parents` names it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def make_parents(path: Path) -> None:
    """Make ``path``'s parent directory and any missing above it (mode 0o777
    less the umask, as mkdir(1) ``-p``); nothing when it exists.
    NotADirectoryError naming the first component that exists and is not a
    directory (a file, a dangling symbolic link); other OSError as mkdir(2)
    raises them."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        for above in reversed(path.parents):
            if os.path.lexists(above) and not os.path.isdir(above):
                raise NotADirectoryError(errno.ENOTDIR, f"{above} is not a directory", str(path)) from exc
        raise


__all__ = ["make_parents"]
