"""Many files at once: planning names for paths and prefixes, and running
transfers concurrently over one :class:`~zfile.client.Client`.

Naming follows ``scp -r``: ``send photos/`` stores ``photos/<relative
path>``; ``get photos/`` writes ``OUT/photos/<relative path>``; ``get
a/b.bin`` writes ``OUT/b.bin``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from zfile.client.channel import Progress, no_progress
from zfile.client.client import Client, Result
from zfile.errors import BadName, ErrorCode, LocalFileError, RemoteError, ZfileError
from zfile.protocol.events import Entry
from zfile.protocol.names import check_name

#: Most files in one PUT-MANY message, and messages in flight at once: 256
#: files of 4 KiB make a 1 MiB message, and four keep the daemon's disk busy
#: while the client reads the next batch.
MANY_FILES = 256
MANY_IN_FLIGHT = 4


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one file: ``result`` on success, else ``error``."""

    name: str
    result: Result | None = None
    error: ZfileError | None = None


def plan_upload(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, str, int]]:
    """Expand files and directories into (local path, stored name, size bytes).

    A directory contributes every regular file below it (symlinked files are
    followed, symlinked directories are not, to avoid loops), named
    ``<dir's basename>/<relative path>`` with ``/`` separators.  Raises
    :class:`LocalFileError` for a path that does not exist or is neither a
    file nor a directory.
    """
    plan: list[tuple[Path, str, int]] = []
    for raw in paths:
        path = Path(raw)
        try:
            if path.is_file():
                plan.append((path, path.name, path.stat().st_size))
            elif path.is_dir():
                base = path.resolve().name
                for dirpath, dirnames, filenames in os.walk(path):
                    dirnames.sort()
                    rel_dir = PurePosixPath(*Path(dirpath).relative_to(path).parts)
                    for fname in sorted(filenames):
                        fpath = Path(dirpath, fname)
                        if fpath.is_file():
                            name = str(PurePosixPath(base) / rel_dir / fname)
                            plan.append((fpath, name, fpath.stat().st_size))
            else:
                raise LocalFileError(f"{path}: no such file or directory")
        except OSError as exc:
            raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None
    return plan


async def plan_download(client: Client, specs: Sequence[str], out: Path) -> list[tuple[Entry, Path]]:
    """Resolve names and prefixes on the daemon into (entry, local path).

    ``spec`` naming a stored file maps to ``out/<basename>``; ``spec`` ending
    in ``/`` or naming a directory maps everything under it to
    ``out/<last component>/<relative path>``.  Raises :class:`RemoteError`
    (code not-found) when a spec matches nothing and :class:`BadName` when the
    daemon returns a name that would escape ``out``.
    """
    plan: list[tuple[Entry, Path]] = []
    for spec in specs:
        stem = spec.rstrip("/")
        found = False
        async for entry in client.list(stem):
            if entry.name == stem and not spec.endswith("/"):
                rel = PurePosixPath(stem).name
            elif entry.name.startswith(stem + "/") or not stem:
                below = entry.name[len(stem) + 1 :] if stem else entry.name
                rel = str(PurePosixPath(PurePosixPath(stem).name, below)) if stem else below
            else:
                continue
            # The daemon's names are input too: never write outside `out`.
            check_name(rel)
            check_name(entry.name)
            plan.append((entry, out.joinpath(*PurePosixPath(rel).parts)))
            found = True
        if not found:
            raise RemoteError(f"{spec}: no such file or directory on the daemon", code=ErrorCode.NOT_FOUND)
    return plan


async def run_all(jobs: Iterable[tuple[str, Callable[[], Awaitable[Result]]]], concurrency: int) -> list[Outcome]:
    """Run ``(name, job)`` pairs with at most ``concurrency`` at once.

    Errors are collected per file (a failed file does not stop the others);
    the order of outcomes is the order of jobs.
    """
    items = list(jobs)
    outcomes: list[Outcome | None] = [None] * len(items)
    queue = iter(enumerate(items))

    async def worker() -> None:
        for index, (name, job) in queue:
            try:
                outcomes[index] = Outcome(name, result=await job())
            except ZfileError as exc:
                outcomes[index] = Outcome(name, error=exc)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(items))))))
    return [o for o in outcomes if o is not None]


async def send_paths(
    client: Client,
    paths: Sequence[str | os.PathLike[str]],
    *,
    clobber: bool = True,
    progress: Progress = no_progress,
    plan: list[tuple[Path, str, int]] | None = None,
) -> list[Outcome]:
    """Upload files and directories; see :func:`plan_upload` for naming.

    Files of at most the config's ``inline_max`` bytes go many to a message
    (:meth:`Client.put_many`, up to ``many_bytes`` and :data:`MANY_FILES`
    files each, :data:`MANY_IN_FLIGHT` messages at once); larger ones stream
    on their own, ``concurrency`` at once.  The order of outcomes is the
    order of the plan.
    """
    plan = plan_upload(paths) if plan is None else plan
    outcomes: list[Outcome | None] = [None] * len(plan)
    small = [k for k, (_, _, size) in enumerate(plan) if size <= client.config.inline_max]
    large = [k for k, (_, _, size) in enumerate(plan) if size > client.config.inline_max]

    def job(path: Path, name: str) -> Callable[[], Awaitable[Result]]:
        return lambda: client.put(path, name, clobber=clobber, progress=progress)

    async def singles() -> None:
        jobs = ((plan[k][1], job(plan[k][0], plan[k][1])) for k in large)
        done = await run_all(jobs, client.config.concurrency)
        for k, outcome in zip(large, done, strict=True):
            outcomes[k] = outcome

    batches = iter(_batches(plan, small, client.config.many_bytes))

    async def sender() -> None:
        for ks in batches:
            files = [(plan[k][0], plan[k][1]) for k in ks]
            try:
                results: list[Result | ZfileError] = await client.put_many(files, clobber=clobber, progress=progress)
            except ZfileError as exc:
                results = [exc] * len(ks)
            for k, r in zip(ks, results, strict=True):
                outcomes[k] = (
                    Outcome(plan[k][1], error=r) if isinstance(r, ZfileError) else Outcome(plan[k][1], result=r)
                )

    await asyncio.gather(singles(), *(sender() for _ in range(MANY_IN_FLIGHT)))
    return [o for o in outcomes if o is not None]


def _batches(plan: list[tuple[Path, str, int]], small: list[int], most_bytes: int) -> Iterator[list[int]]:
    """Consecutive runs of ``small`` (indexes into ``plan``) of at most
    MANY_FILES files and ``most_bytes`` bytes by the plan's sizes."""
    batch: list[int] = []
    total = 0
    for k in small:
        size = plan[k][2]
        if batch and (len(batch) == MANY_FILES or total + size > most_bytes):
            yield batch
            batch, total = [], 0
        batch.append(k)
        total += size
    if batch:
        yield batch


async def fetch(
    client: Client,
    plan: list[tuple[Entry, Path]],
    *,
    progress: Progress = no_progress,
) -> list[Outcome]:
    """Download a plan made by :func:`plan_download`."""

    def job(entry: Entry, dest: Path) -> Callable[[], Awaitable[Result]]:
        return lambda: client.get(entry.name, dest, progress=progress)

    return await run_all(((e.name, job(e, d)) for e, d in plan), client.config.concurrency)


__all__ = ["Outcome", "plan_upload", "plan_download", "run_all", "send_paths", "fetch", "BadName"]
