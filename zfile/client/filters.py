"""Which files a tree leaves out: ``--exclude``, ``--include`` and
``--exclude-from`` rules, with the semantics of a ``.gitignore`` file
(gitignore(5)), matched by the ``pathspec`` library.

A path is matched relative to the root of its tree (the directory named on
the command line for ``send``, the named prefix for ``get``), with ``/``
between components:

- the rules are the lines of each ``--exclude-from`` file, then each
  ``--exclude`` pattern, then each ``--include`` pattern as a negation
  (``!PATTERN``); as in a ``.gitignore`` the last rule that matches a path
  decides, so ``--include`` re-includes what an ``--exclude`` left out;
- a pattern without a ``/`` matches a name at any depth (``*.log``), one with
  a leading or inner ``/`` is anchored at the tree's root (``/build``,
  ``docs/*.md``), a trailing ``/`` matches directories only, ``**`` spans
  directories;
- a directory that is excluded is not descended into, and nothing below it
  can be re-included (gitignore(5): "It is not possible to re-include a file
  if a parent directory of that file is excluded"; rsync behaves the same):
  ``--exclude '*' --include '*.py'`` keeps the ``.py`` files at the top, and
  ``--include '*/'`` also keeps the directories, so the ``.py`` files below.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath
from typing import Any

from zfile.errors import LocalFileError


class Filter:
    """Compiled rules (module docstring); an empty Filter excludes nothing.

    ``Filter(lines)`` takes gitignore lines as they are, ``from_rules``
    builds them from command-line patterns.  Raises :class:`ValueError`
    naming the first pattern that is not a valid gitignore pattern.
    """

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self.lines = [line for line in lines if line.strip() and not line.startswith("#")]
        self._spec: Any = None
        self._dir_spec: Any = None
        if self.lines:
            # Imported here: commands that filter nothing do not pay for it.
            import pathspec

            try:
                # Files: GitIgnoreSpec, which gives a pattern on the file itself
                # priority over one that matches only a directory ("!*/" keeps
                # directories, not the files in them), as git does.  Directories
                # ("pkg/"): the last matching pattern, where GitIgnoreSpec would
                # let "*" outrank a later "!*/".
                self._spec = pathspec.GitIgnoreSpec.from_lines(self.lines)
                self._dir_spec = pathspec.PathSpec.from_lines("gitignore", self.lines)
            except Exception as exc:  # pathspec's own error types vary by version
                raise ValueError(f"not a valid pattern: {exc}") from None
        # Directory -> whether it or one of its parents is excluded.
        self._dirs: dict[str, bool] = {}

    @classmethod
    def from_rules(
        cls,
        exclude: Sequence[str] = (),
        include: Sequence[str] = (),
        exclude_from: Sequence[str | os.PathLike[str]] = (),
    ) -> Filter:
        """The rules of ``exclude_from`` files (gitignore lines, ``#`` comments
        and ``!`` negations included), then ``exclude`` patterns, then
        ``include`` patterns as negations.  Raises :class:`LocalFileError`
        when a file cannot be read, :class:`ValueError` for a bad pattern."""
        lines: list[str] = []
        for path in exclude_from:
            try:
                with open(path, encoding="utf-8") as f:
                    lines += f.read().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
                raise LocalFileError(f"cannot read the exclude file {path}: {why}") from None
        # A leading '!' or '#' in --exclude is the pattern's own character, not gitignore syntax.
        lines += ["\\" + p if p.startswith(("!", "#")) else p for p in exclude]
        lines += ["!" + p for p in include]
        return cls(lines)

    def __bool__(self) -> bool:
        return self._spec is not None

    def matches(self, rel: str, is_dir: bool = False) -> bool:
        """True when the rules exclude ``rel`` itself (a path relative to the
        tree's root), not looking at its parents: for a walk that descends
        only into directories that are not excluded."""
        if self._spec is None:
            return False
        if is_dir:
            return bool(self._dir_spec.match_file(rel + "/"))
        return bool(self._spec.match_file(rel))

    def excluded(self, rel: str) -> bool:
        """True when the file ``rel`` (relative to the tree's root) is left
        out, by a rule on it or on one of its parent directories: for names
        that come as a flat list (the daemon's listing)."""
        if self._spec is None:
            return False
        parent = str(PurePosixPath(rel).parent)
        if parent != "." and self._dir_excluded(parent):
            return True
        return self.matches(rel)

    def _dir_excluded(self, rel: str) -> bool:
        known = self._dirs.get(rel)
        if known is None:
            parent = str(PurePosixPath(rel).parent)
            known = (parent != "." and self._dir_excluded(parent)) or self.matches(rel, is_dir=True)
            self._dirs[rel] = known
        return known


NO_FILTER = Filter()

__all__ = ["NO_FILTER", "Filter"]
