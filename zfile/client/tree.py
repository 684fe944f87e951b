"""Many files at once: running the transfers of a plan
(:mod:`zfile.client.plan`) concurrently over one
:class:`~zfile.client.Client`, small files batched as PUT-MANY and
GET-MANY messages, each file's :class:`~zfile.client.plan.Outcome` as
soon as it is known.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path

from zfile.client.channel import Progress, no_progress
from zfile.client.client import Client, Result
from zfile.client.plan import DownloadPlan, Outcome, UploadPlan, plan_upload
from zfile.errors import ErrorCode, ZfileError
from zfile.protocol.events import Entry

#: Most files in one PUT-MANY message, and messages in flight at once: 256
#: files of 4 KiB make a 1 MiB message, and four keep the daemon's disk busy
#: while the client reads the next batch.
MANY_FILES = 256
MANY_IN_FLIGHT = 4

#: Called with each file's :class:`Outcome` as soon as it is known.
FileDone = Callable[["Outcome"], object]


def _no_file_done(_: Outcome) -> None:
    pass


class Halt:
    """Ends a run at the first ``no-space`` error: the daemon's disk is full
    (an upload), or this side's (a download), and every file after it would
    fail the same way.  Files not yet started then fail at once with that
    first error, without a request."""

    def __init__(self) -> None:
        #: The first no-space error seen, or None.
        self.error: ZfileError | None = None

    def note(self, outcome: Outcome) -> None:
        """Look at a file's outcome; a no-space error halts the run."""
        if self.error is None and outcome.error is not None and outcome.error.code is ErrorCode.NO_SPACE:
            self.error = outcome.error


async def run_all(
    jobs: Iterable[tuple[str, Callable[[], Awaitable[Result]]]],
    concurrency: int,
    on_file: FileDone = _no_file_done,
    halt: Halt | None = None,
) -> list[Outcome]:
    """Run ``(name, job)`` pairs with at most ``concurrency`` at once.

    Errors are collected per file (a failed file does not stop the others,
    except that once ``halt`` has seen a no-space answer the jobs not yet
    started fail with it unrun); the order of outcomes is the order of jobs;
    ``on_file`` sees each outcome as it comes.
    """
    items = list(jobs)
    outcomes: list[Outcome | None] = [None] * len(items)
    queue = iter(enumerate(items))

    async def worker() -> None:
        for index, (name, job) in queue:
            if halt is not None and halt.error is not None:
                outcomes[index] = Outcome(name, error=halt.error)
            else:
                try:
                    outcomes[index] = Outcome(name, result=await job())
                except ZfileError as exc:
                    outcomes[index] = Outcome(name, error=exc)
                if halt is not None:
                    halt.note(outcomes[index])
            on_file(outcomes[index])

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(items))))))
    return [o for o in outcomes if o is not None]


async def send_paths(
    client: Client,
    paths: Sequence[str | os.PathLike[str]],
    *,
    clobber: bool = True,
    progress: Progress = no_progress,
    plan: UploadPlan | None = None,
    on_file: FileDone = _no_file_done,
) -> list[Outcome]:
    """Upload files and directories; see :func:`plan_upload` for naming and
    for what is skipped (and its errors), or send the ``plan`` it made.

    Files of at most the config's ``inline_max`` bytes go many to a message
    (:meth:`Client.put_many`, up to ``many_bytes`` and :data:`MANY_FILES`
    files each, :data:`MANY_IN_FLIGHT` messages at once); larger ones stream
    on their own, ``concurrency`` at once.  The outcomes are the plan's
    files in order, then its skipped entries (their error a
    :class:`~zfile.errors.Skipped`); ``on_file`` sees each file's outcome as
    soon as it is known.  The first ``no-space`` answer ends the run: files
    not yet sent fail with that error, unsent (:class:`Halt`).
    """
    whole = plan_upload(paths) if plan is None else plan
    halt = Halt()
    plan = whole.files
    outcomes: list[Outcome | None] = [None] * len(plan)
    small = [k for k, (_, _, size) in enumerate(plan) if size <= client.config.inline_max]
    large = [k for k, (_, _, size) in enumerate(plan) if size > client.config.inline_max]

    def job(path: str, name: str) -> Callable[[], Awaitable[Result]]:
        return lambda: client.put(path, name, clobber=clobber, progress=progress)

    async def singles() -> None:
        jobs = ((plan[k][1], job(plan[k][0], plan[k][1])) for k in large)
        done = await run_all(jobs, client.config.concurrency, on_file, halt)
        for k, outcome in zip(large, done, strict=True):
            outcomes[k] = outcome

    batches = iter(_batches(plan, small, client.config.many_bytes))

    async def sender() -> None:
        for ks in batches:
            files = [(plan[k][0], plan[k][1]) for k in ks]
            results: list[Result | ZfileError]
            if halt.error is not None:
                results = [halt.error] * len(ks)
            else:
                try:
                    results = await client.put_many(files, clobber=clobber, progress=progress)
                except ZfileError as exc:
                    results = [exc] * len(ks)
            for k, r in zip(ks, results, strict=True):
                outcomes[k] = (
                    Outcome(plan[k][1], error=r) if isinstance(r, ZfileError) else Outcome(plan[k][1], result=r)
                )
                halt.note(outcomes[k])
                on_file(outcomes[k])

    await asyncio.gather(singles(), *(sender() for _ in range(MANY_IN_FLIGHT)))
    return [o for o in outcomes if o is not None] + whole.skipped


def _batches(plan: Sequence[tuple[object, object, int]], small: list[int], most_bytes: int) -> Iterator[list[int]]:
    """Consecutive runs of ``small`` (indexes into ``plan``, whose items end
    with a size in bytes) of at most MANY_FILES files and ``most_bytes``
    bytes by the plan's sizes."""
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
    plan: DownloadPlan,
    *,
    progress: Progress = no_progress,
    on_file: FileDone = _no_file_done,
) -> list[Outcome]:
    """Download a plan made by :func:`plan_download`: one :class:`Outcome`
    per file in the plan's order, then its missing specs and skipped files;
    ``on_file`` sees each file's outcome as soon as it is known.

    Files listed at most ``inline_max`` bytes come many to a message
    (:meth:`Client.get_many`, up to ``many_bytes`` and :data:`MANY_FILES`
    files each, :data:`MANY_IN_FLIGHT` messages at once), as uploads do;
    larger ones stream on their own, ``concurrency`` at once.  The first
    file that cannot be written for a full local disk ends the run: files
    not yet fetched fail with that error, unrequested (:class:`Halt`); a
    large file cut short keeps its partial, to resume from."""
    files = plan.files
    halt = Halt()
    outcomes: list[Outcome | None] = [None] * len(files)
    sizes = [(entry, dest, entry.size) for entry, dest in files]
    small = [k for k, (_, _, size) in enumerate(sizes) if size <= client.config.inline_max]
    large = [k for k, (_, _, size) in enumerate(sizes) if size > client.config.inline_max]

    def job(entry: Entry, dest: Path) -> Callable[[], Awaitable[Result]]:
        return lambda: client.get(entry.name, dest, progress=progress)

    async def singles() -> None:
        jobs = ((files[k][0].name, job(*files[k])) for k in large)
        done = await run_all(jobs, client.config.concurrency, on_file, halt)
        for k, outcome in zip(large, done, strict=True):
            outcomes[k] = outcome

    batches = iter(_batches(sizes, small, client.config.many_bytes))

    async def getter() -> None:
        for ks in batches:
            results: list[Result | ZfileError]
            if halt.error is not None:
                results = [halt.error] * len(ks)
            else:
                try:
                    results = await client.get_many([(files[k][0].name, files[k][1]) for k in ks], progress=progress)
                except ZfileError as exc:
                    results = [exc] * len(ks)
            for k, r in zip(ks, results, strict=True):
                name = files[k][0].name
                outcomes[k] = Outcome(name, error=r) if isinstance(r, ZfileError) else Outcome(name, result=r)
                halt.note(outcomes[k])
                on_file(outcomes[k])

    await asyncio.gather(singles(), *(getter() for _ in range(MANY_IN_FLIGHT)))
    return [o for o in outcomes if o is not None] + plan.missing + plan.skipped


__all__ = ["FileDone", "Halt", "MANY_FILES", "MANY_IN_FLIGHT", "fetch", "run_all", "send_paths"]
