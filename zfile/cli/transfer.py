"""``send`` and ``get`` with one daemon: quick check, the transfers, then
``--delete``; or with ``-n/--dry-run`` only what they would do.

Text output: one summary line on stdout (files sent or fetched, unchanged,
deleted, failed; excluded and skipped when there are any), errors and
skipped entries one line each on stderr.  A dry run prints a line per file
instead (``send``/``fetch``, ``unchanged``, ``delete``, ``exclude``, then
the name) and a summary that starts with ``dry run:``.

``--json``: a JSON array of one object, the keys of a fan-out node's report
(:func:`zfile.cli.fanout.report_json`) and ``sent`` (or ``fetched``),
``deleted``, ``excluded``, ``skipped``, ``failed``, ``dry_run`` and
``results``: one object per file with ``name`` (the stored name), ``path``
(the local path, or null), ``result`` (``sent``/``fetched``, ``unchanged``,
``deleted``, ``excluded``, ``skipped``, ``failed``), ``size`` (bytes, or
null), ``digest`` (hex, or null) and ``error`` (a sentence, or null).

Deletions run only after every transfer of the run succeeded (and, for
``send``, every local entry could be read): otherwise nothing is deleted
and stderr says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from zfile.cli.boundary import EXIT_FAILED
from zfile.cli.common import Connection, Tally, notes, progress_bar, report, run
from zfile.cli.fanout import report_json
from zfile.client.client import Client
from zfile.client.delete import (
    Deleted,
    LocalDeletions,
    delete_local,
    delete_remote,
    local_deletions,
    remote_deletions,
)
from zfile.client.fanout import NodeReport, node_label, tree_digest
from zfile.client.filters import Filter
from zfile.client.plan import DownloadPlan, Outcome, UploadPlan, plan_download, shown
from zfile.client.quickcheck import Compare, unchanged_downloads, unchanged_uploads
from zfile.client.tree import fetch, send_paths
from zfile.errors import Skipped, ZfileError
from zfile.protocol.digest import DEFAULT_ALGO


@dataclass
class Run:
    """What one run did (or, dry, would do)."""

    verb: str  # "sent" or "fetched"
    endpoint: str
    dry_run: bool
    #: (stored name, local path, size) of each file to transfer.
    todo: list[tuple[str, str | Path, int]] = field(default_factory=list)
    #: (stored name, local path, size, digest or None) of each unchanged file.
    unchanged: list[tuple[str, str | Path, int, bytes | None]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    deleted: list[Deleted] = field(default_factory=list)
    #: (local path, why) of each entry ``get --delete`` left although the source lacks it.
    kept: list[tuple[str, str]] = field(default_factory=list)
    #: Why --delete deleted nothing, when it was asked for and did not run.
    no_delete: str = ""
    began: float = field(default_factory=time.monotonic)

    def transfer_failed(self) -> bool:
        return any(o.error is not None and not isinstance(o.error, Skipped) for o in self.outcomes)


def _delete_refused(run: Run, unread: Sequence[str] = ()) -> str:
    failed = sum(o.error is not None and not isinstance(o.error, Skipped) for o in run.outcomes)
    if failed:
        return f"{failed} file(s) failed"
    if unread:
        return f"'{unread[0]}' could not be read" + (f" (and {len(unread) - 1} more)" if len(unread) > 1 else "")
    return ""


def send(
    conn: Connection,
    planner: Callable[[], UploadPlan],
    *,
    clobber: bool,
    compare: Compare,
    filters: Filter,
    dry_run: bool,
    delete: bool,
    quiet: bool,
    as_json: bool,
    timeout: float,
    bwlimit: int | None,
) -> None:
    """``zfile send`` to one daemon (module docstring): ``planner`` walks the
    paths (:func:`~zfile.client.plan.plan_upload`, in a worker thread, while
    the client connects), then CHECK requests ask the daemon which files it
    holds unchanged.
    A local error (:class:`~zfile.errors.LocalFileError`, a name collision)
    is raised before the daemon is reached, or instead of the daemon's
    error when both fail."""
    result = Run("sent", conn.endpoint, dry_run)

    async def go() -> Run:
        planning = asyncio.ensure_future(asyncio.to_thread(planner))
        try:
            async with conn.client(timeout, bwlimit) as client:
                plan = await planning
                result.excluded = list(plan.excluded)
                await plan_send(client, plan, result, compare=compare, filters=filters, delete=delete)
                return await send_planned(client, plan)
        except ZfileError:
            # What is wrong here (no such file) says more than an unreachable daemon.
            await asyncio.wait([planning])
            if not planning.cancelled() and planning.exception() is not None:
                raise planning.exception() from None
            raise

    async def send_planned(client: Client, plan: UploadPlan) -> Run:
        if dry_run:
            return result
        todo = [(path, name, size) for name, path, size in result.todo]
        with progress_bar(sum(size for *_, size in todo), quiet or as_json, "send") as bar, notes(bar, quiet):
            tally = Tally("send", len(todo), bar)
            result.outcomes = await send_paths(
                client,
                [],
                clobber=clobber,
                progress=bar.update,
                plan=dataclasses.replace(plan, files=todo),
                on_file=tally.file_done,
            )
        if delete:
            result.no_delete = _delete_refused(result, plan.unread)
            if not result.no_delete:
                result.deleted = await delete_remote(client, await remote_deletions(client, plan, filters))
        return result

    finish(run(go), quiet, as_json)


async def plan_send(
    client: Client,
    plan: UploadPlan,
    result: Run,
    *,
    compare: Compare,
    filters: Filter,
    delete: bool,
) -> None:
    """Fill ``result`` with what a send of ``plan`` to ``client``'s daemon
    would do: the files to send and those unchanged (the quick check by
    ``compare``, asked of the daemon in CHECK requests,
    :func:`~zfile.client.quickcheck.unchanged_uploads`); for a dry run also
    the entries the plan skipped and, with ``delete``, the stored files it
    would delete (or why none would be).  Raises the client's errors."""
    verdicts = await unchanged_uploads(client, plan.files, compare, plan.mtime_ns)
    for (path, name, size), (same_here, digest) in zip(plan.files, verdicts, strict=True):
        if same_here:
            result.unchanged.append((name, path, size, digest))
        else:
            result.todo.append((name, path, size))
    if result.dry_run:
        result.outcomes = list(plan.skipped)
        if delete:
            result.no_delete = _delete_refused(result, plan.unread)
        if delete and not result.no_delete:
            result.deleted = [Deleted(n) for n in await remote_deletions(client, plan, filters)]


def get(
    conn: Connection,
    names: Sequence[str],
    out: Path,
    *,
    compare: Compare,
    filters: Filter,
    dry_run: bool,
    delete: bool,
    quiet: bool,
    as_json: bool,
    timeout: float,
    bwlimit: int | None,
) -> None:
    """``zfile get`` from one daemon (module docstring)."""
    result = Run("fetched", conn.endpoint, dry_run)

    async def go() -> Run:
        Tally("get", 0)  # until the names are resolved: nothing done, nothing to resume
        async with conn.client(timeout, bwlimit) as client:
            plan = await plan_download(client, names, out, filters=filters)
            result.excluded = list(plan.excluded)
            skip = await unchanged_downloads(plan.files, compare)
            todo = [f for f, same_here in zip(plan.files, skip, strict=True) if not same_here]
            for (entry, dest), same_here in zip(plan.files, skip, strict=True):
                if same_here:
                    result.unchanged.append((entry.name, dest, entry.size, entry.digest))
            result.todo = [(entry.name, dest, entry.size) for entry, dest in todo]
            if dry_run:
                result.outcomes = plan.missing + plan.skipped
                if delete:
                    result.no_delete = _delete_refused(result)
                if delete and not result.no_delete:
                    found = await _local_deletions(plan, filters)
                    result.deleted = [Deleted(shown(p)) for p in found.doomed]
                    result.kept = [(shown(p), why) for p, why in found.kept]
                return result
            with progress_bar(sum(e.size for e, _ in todo), quiet or as_json, "get") as bar, notes(bar, quiet):
                tally = Tally("get", len(todo), bar)
                result.outcomes = await fetch(
                    client, dataclasses.replace(plan, files=todo), progress=bar.update, on_file=tally.file_done
                )
        if delete:
            result.no_delete = _delete_refused(result)
            if not result.no_delete:
                found = await _local_deletions(plan, filters)
                roots = [root for _, root in plan.trees]
                result.deleted = await asyncio.to_thread(delete_local, found.doomed, roots)
                result.kept = [(shown(p), why) for p, why in found.kept]
        return result

    finish(run(go), quiet, as_json)


async def _local_deletions(plan: DownloadPlan, filters: Filter) -> LocalDeletions:
    return await asyncio.to_thread(local_deletions, plan, filters)


def finish(result: Run, quiet: bool, as_json: bool) -> None:
    """Print what the run did (module docstring) and exit 1 when anything
    failed or was skipped."""
    delete_failed = [d for d in result.deleted if d.error is not None]
    if result.no_delete:
        click.echo(f"zfile: --delete: {_nothing_deleted(result)}", err=True)
    for path, why in result.kept:
        click.echo(f"zfile: --delete left '{path}': {why}, which zfile never writes", err=True)
    if as_json:
        click.echo(json.dumps([json_summary(result)], indent=1))
        failed = result.transfer_failed() or delete_failed
        if failed or any(isinstance(o.error, Skipped) for o in result.outcomes):
            sys.exit(EXIT_FAILED)
        return
    for d in delete_failed:
        click.echo(f"zfile: error: {d.error}", err=True)
    if result.dry_run:
        if print_dry(result, quiet):
            sys.exit(EXIT_FAILED)
        return
    report(
        result.outcomes,
        result.verb,
        result.began,
        quiet,
        len(result.unchanged),
        deleted=len(result.deleted) - len(delete_failed),
        excluded=len(result.excluded),
        other_failed=len(delete_failed),
    )


def nothing_deleted(result: Run) -> str:
    """Why a run's ``--delete`` deleted nothing, as a clause."""
    return _nothing_deleted(result)


def _nothing_deleted(result: Run) -> str:
    return f"nothing {'would be' if result.dry_run else 'was'} deleted, as {result.no_delete}"


def print_dry(result: Run, quiet: bool, prefix: str = "", skipped_said: bool = False) -> bool:
    """Print a dry run's lines (module docstring), each after ``prefix``
    (a node's endpoint with several), the skipped entries on stderr unless
    ``skipped_said``; True when anything was skipped or failed."""
    verb = "send" if result.verb == "sent" else "fetch"
    for name, path, size in result.todo:
        where = f" -> {shown(path)}" if verb == "fetch" else ""
        click.echo(f"{prefix}{verb:<9} {shown(name)}{where}  ({size:,} bytes)")
    for name, *_ in result.unchanged:
        click.echo(f"{prefix}unchanged {shown(name)}")
    for d in result.deleted:
        click.echo(f"{prefix}delete    {d.name}")
    for name in result.excluded:
        click.echo(f"{prefix}exclude   {shown(name)}")
    skipped = [o for o in result.outcomes if isinstance(o.error, Skipped)]
    failed = [o for o in result.outcomes if not isinstance(o.error, Skipped)]
    for o in [] if skipped_said else skipped:
        click.echo(f"zfile: skipped '{o.name}': {o.error}", err=True)
    for o in failed:
        click.echo(f"zfile: error: {o.name}: {o.error}", err=True)
    if not quiet:
        nbytes = sum(size for *_, size in result.todo)
        click.echo(
            f"{prefix}dry run: would have {result.verb} {len(result.todo)} file(s), {nbytes / 1e6:.1f} MB; "
            f"{len(result.unchanged)} unchanged; {len(result.deleted)} deleted; {len(failed)} failed"
            + (f"; {len(result.excluded)} excluded" if result.excluded else "")
            + (f"; {len(skipped)} skipped" if skipped else "")
            + "; nothing was changed"
        )
    return bool(result.outcomes)


def _file(name: str, path: Path | None, outcome: str, size=None, digest=None, error=None) -> dict[str, Any]:
    return {
        "name": name,
        "path": str(path) if path is not None else None,
        "result": outcome,
        "size": size,
        "digest": digest.hex() if digest is not None else None,
        "error": str(error) if error is not None else None,
    }


def json_summary(result: Run) -> dict[str, Any]:
    """The run as one object of the ``--json`` array (module docstring)."""
    results: list[dict[str, Any]] = []
    done = [o for o in result.outcomes if o.result is not None]
    failed = [o for o in result.outcomes if o.error is not None and not isinstance(o.error, Skipped)]
    skipped = [o for o in result.outcomes if isinstance(o.error, Skipped)]
    if result.dry_run:
        results += [_file(n, p, result.verb, s) for n, p, s in result.todo]
    paths = {name: path for name, path, _ in result.todo}
    for o in done:
        assert o.result is not None
        path = o.result.path or paths.get(o.result.name)
        results.append(_file(o.result.name, path, result.verb, o.result.size, o.result.digest))
    results += [_file(n, p, "unchanged", s, d) for n, p, s, d in result.unchanged]
    results += [_file(d.name, None, "deleted" if d.error is None else "failed", error=d.error) for d in result.deleted]
    results += [_file(n, None, "excluded") for n in result.excluded]
    results += [_file(p, p, "kept", error=f"{why}, which zfile never writes") for p, why in result.kept]
    results += [_file(o.name, None, "skipped", error=o.error) for o in skipped]
    results += [_file(o.name, paths.get(o.name), "failed", error=o.error) for o in failed]
    digests = [(o.result.name, DEFAULT_ALGO, o.result.digest) for o in done] + [
        (n, DEFAULT_ALGO, d) for n, _, _, d in result.unchanged if d is not None
    ]
    delete_failed = [d for d in result.deleted if d.error is not None]
    node = NodeReport(
        result.endpoint,
        node_label(result.endpoint),
        files=len(done) + len(result.unchanged),
        unchanged=len(result.unchanged),
        bytes=sum(o.result.size for o in done if o.result is not None),
        seconds=time.monotonic() - result.began,
        digest=None
        if failed or result.dry_run or not digests
        else (digests[0][2] if len(digests) == 1 else tree_digest(digests)),
        failed=tuple(failed),
    )
    summary = report_json(node)
    if delete_failed and summary["result"] == "ok":
        summary["result"] = "failed"
        summary["error"] = str(delete_failed[0].error)
    summary.update(
        {
            result.verb: len(result.todo) if result.dry_run else len(done),
            "deleted": len(result.deleted) - len(delete_failed),
            "excluded": len(result.excluded),
            "skipped": len(skipped),
            "failed": len(failed) + len(delete_failed),
            "dry_run": result.dry_run,
            "results": results,
        }
    )
    if result.no_delete:
        summary["error"] = summary["error"] or f"--delete: {_nothing_deleted(result)}"
    return summary


__all__ = ["Run", "finish", "get", "json_summary", "nothing_deleted", "plan_send", "print_dry", "send"]
