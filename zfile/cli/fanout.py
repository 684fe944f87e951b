"""``send --to A,B,C`` and ``get --from A,B,C``: the fan-out report.

A line per node on stdout (or ``--json``, an array of objects), and for each
failed node ``zfile: error: ENDPOINT: <reason>`` on stderr; exit 1 when any
node failed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import click

from zfile.cli.boundary import EXIT_FAILED
from zfile.cli.running import run_main
from zfile.client.chain import send_chain
from zfile.client.config import ClientConfig
from zfile.client.fanout import NodeReport, gather, send_everywhere
from zfile.client.filters import NO_FILTER, Filter
from zfile.client.plan import UploadPlan
from zfile.client.quickcheck import Compare

#: Makes a progress bar: ``(total bytes or None, desc=description)`` -> a context manager
#: whose value has ``update(n)``.
BarFactory = Callable[..., AbstractContextManager[Any]]
#: ``--delete`` after a fan-out send: the reports -> endpoint -> the names
#: deleted there (objects with ``error``, None when deleted), or why none were.
AfterSend = Callable[[list[NodeReport]], Awaitable[dict[str, Any]]]


def is_node_list(value: str | None) -> bool:
    """True for a ``--to``/``--from`` value naming several nodes: ``A,B`` or ``@FILE``."""
    return value is not None and ("," in value or value.startswith("@"))


def report_json(report: NodeReport) -> dict[str, Any]:
    """One node's report as JSON: endpoint, node, result ("ok" or "failed"),
    files, unchanged, bytes, seconds, mb_per_s (10**6 bytes per second),
    digest (hex or null) and error (a sentence or null)."""
    return {
        "endpoint": report.endpoint,
        "node": report.node,
        "result": "ok" if report.ok else "failed",
        "files": report.files,
        "unchanged": report.unchanged,
        "bytes": report.bytes,
        "seconds": round(report.seconds, 3),
        "mb_per_s": round(report.mb_per_s, 2),
        "digest": report.digest.hex() if report.digest is not None else None,
        "error": report.reason() or None,
    }


def report_line(report: NodeReport) -> str:
    digest = report.digest.hex() if report.digest is not None else "-"
    result = "ok" if report.ok else "FAILED"
    line = (
        f"{report.endpoint}  {result:<6}  {report.bytes:>14,} B  {report.seconds:8.2f} s  "
        f"{report.mb_per_s:8.1f} MB/s  {digest}"
    )
    if report.unchanged:
        line += f"  ({report.unchanged} unchanged)"
    return line


def finish(
    reports: Sequence[NodeReport],
    as_json: bool,
    quiet: bool,
    incomplete: bool = False,
    deleted: dict[str, Any] | None = None,
) -> None:
    """Print the report and exit 1 if any node failed, or when
    ``incomplete`` (something the user named was not sent anywhere).
    ``deleted`` is what ``--delete`` did on each node (:data:`AfterSend`):
    a count in its line (``deleted`` in ``--json``), an error line for each
    name it could not delete or for why it deleted nothing, and exit 1
    then."""
    deleted = deleted or {}
    gone = {e: sum(d.error is None for d in done) for e, done in deleted.items() if not isinstance(done, str)}
    if as_json:
        click.echo(json.dumps([_with_deleted(report_json(r), deleted.get(r.endpoint)) for r in reports], indent=1))
    elif not quiet:
        for report in reports:
            line = report_line(report)
            click.echo(line + (f"  ({gone[report.endpoint]} deleted)" if report.endpoint in gone else ""))
    failed = [r for r in reports if not r.ok]
    for report in failed:
        click.echo(f"zfile: error: {report.endpoint}: {report.reason()}", err=True)
    for endpoint, done in deleted.items():
        if isinstance(done, str):
            click.echo(f"zfile: --delete: {endpoint}: {done}", err=True)
            continue
        for d in done:
            if d.error is not None:
                incomplete = True
                click.echo(f"zfile: error: {endpoint}: {d.error}", err=True)
    if not quiet and not as_json:
        click.echo(
            f"{len(reports) - len(failed)} of {len(reports)} node(s) done"
            + (f"; failed: {', '.join(r.endpoint for r in failed)}" if failed else "")
        )
    if failed or incomplete:
        sys.exit(EXIT_FAILED)


def _with_deleted(report: dict[str, Any], done: Any) -> dict[str, Any]:
    if done is None:
        return report
    if isinstance(done, str):
        return {**report, "deleted": 0, "delete_error": done}
    errors = [str(d.error) for d in done if d.error is not None]
    return {**report, "deleted": len(done) - len(errors), "delete_error": errors[0] if errors else None}


def send(
    configs: Sequence[ClientConfig],
    plan: UploadPlan,
    *,
    clobber: bool,
    compare: Compare,
    quiet: bool,
    as_json: bool,
    bar: BarFactory,
    fanout: str = "chain",
    after: AfterSend | None = None,
) -> None:
    """``send PATHS --to A,B,...``: the plan to every node, as a chain
    (:func:`~zfile.client.chain.send_chain`) or at once (``fanout`` "star"),
    then ``after`` (``--delete``) with the reports, then the report; what
    the plan skipped is said first, one line each, and makes the exit code
    1 as for one node."""
    for outcome in plan.skipped:
        click.echo(f"zfile: skipped '{outcome.name}': {outcome.error}", err=True)

    async def go() -> tuple[list[NodeReport], dict[str, Any] | None]:
        total = len(configs) * sum(size for *_, size in plan.files)
        with bar(total, desc=f"send x{len(configs)}") as progress:
            fan = send_chain if fanout == "chain" and len(configs) > 1 else send_everywhere
            reports = await fan(configs, plan, clobber=clobber, compare=compare, progress=progress.update)
        return reports, (await after(reports) if after is not None else None)

    reports, deleted = run_main(go())
    finish(reports, as_json, quiet, incomplete=bool(plan.skipped), deleted=deleted)


def get(
    configs: Sequence[ClientConfig],
    specs: Sequence[str],
    out: Path,
    *,
    compare: Compare,
    quiet: bool,
    as_json: bool,
    bar: BarFactory,
    filters: Filter = NO_FILTER,
) -> None:
    """``get NAMES --from A,B,... -o OUT``: every node's files into OUT/<node>/, then the report."""

    async def go() -> list[NodeReport]:
        # The sizes are known only node by node, after listing: the bar counts bytes without a total.
        with bar(None, desc=f"get x{len(configs)}") as progress:
            return await gather(configs, specs, out, compare=compare, progress=progress.update, filters=filters)

    finish(run_main(go()), as_json, quiet)


__all__ = ["BarFactory", "finish", "get", "send", "is_node_list", "report_json", "report_line"]
