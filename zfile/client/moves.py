"""Moving a stored tree (``zfile mv OLD/ NEW/``): every file under one
prefix renamed to the same path under another, one MOVE each.

Each file moves as :meth:`~zfile.client.ops.FileOps.move` moves one (in one
step on a local store, a copy then a delete on S3); the tree as a whole does
not: while the move runs a reader finds some files under each name, and a
failure, or an interrupt, leaves the rest where they were, so the same
command again (with ``--force`` once the new tree holds files) moves them.
As ``rclone move`` does; mv(1) is atomic only within one file system.  At
most :data:`IN_FLIGHT` MOVEs are in flight at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zfile.errors import ErrorCode, RemoteError, ZfileError
from zfile.protocol.events import Entry
from zfile.protocol.names import quote_name

if TYPE_CHECKING:
    from zfile.client.client import Client

#: MOVE requests in flight at once (each is one round trip and one rename on the daemon).
IN_FLIGHT = 64


@dataclass(frozen=True, slots=True)
class Moved:
    """One file of a tree move: its ``name`` before, and its ``entry``
    under the new name, or the ``error`` that left it where it was."""

    name: str
    entry: Entry | None = None
    error: ZfileError | None = None


async def move_tree(
    client: Client, prefix: str, to: str, *, clobber: bool = False, on_file: Callable[[Moved], object] | None = None
) -> list[Moved]:
    """Rename every file stored under ``prefix`` to the same relative path
    under ``to`` (both directories: ``"logs/2025/"``, ``"archive/2025/"``),
    in name order (module docstring for what is, and is not, one step).
    Returns one :class:`Moved` per file found, by name; a file whose move
    is refused (``exists`` without ``clobber``, a bad new name) is a Moved
    with its error and never stops the others.  ``on_file`` sees each Moved
    as soon as it is known.  Raises ValueError for a
    prefix without its trailing slash or a ``to`` inside ``prefix``;
    RemoteError (``not-found`` when nothing is stored under ``prefix``) and
    TransportError."""
    if not prefix.endswith("/") or not to.endswith("/"):
        raise ValueError(f"a tree is moved from one directory to another, each ending in /: {prefix!r}, {to!r}")
    if to.startswith(prefix):
        raise ValueError(f"cannot move {quote_name(prefix)} into itself ({quote_name(to)})")
    names = [entry.name async for entry in client.list(prefix)]
    if not names:
        raise RemoteError(f"nothing is stored under {quote_name(prefix)}", code=ErrorCode.NOT_FOUND)
    moved: list[Moved] = []
    queue = iter(names)

    async def worker() -> None:
        for name in queue:
            try:
                done = Moved(name, entry=await client.move(name, to + name[len(prefix) :], clobber=clobber))
            except RemoteError as exc:
                done = Moved(name, error=exc)
            moved.append(done)
            if on_file is not None:
                on_file(done)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(IN_FLIGHT, len(names)))]
    try:
        await asyncio.gather(*workers)
    finally:  # a lost connection fails one worker: the others stop too, not each on its own timeout
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return sorted(moved, key=lambda m: m.name)


async def holds_files(client: Client, prefix: str) -> bool:
    """Whether anything is stored under ``prefix`` (one LIST of one entry)."""
    async with contextlib.aclosing(client.list(prefix, page_size=1)) as entries:
        async for _ in entries:
            return True
    return False


__all__ = ["IN_FLIGHT", "Moved", "holds_files", "move_tree"]
