"""``send --to A,B`` with ``-n/--dry-run`` or ``--delete``: what a send to
one daemon does with them (:mod:`zfile.cli.transfer`), node by node, all
nodes at once.

- ``-n``: each node's quick check and deletions, printed as one daemon's
  dry run is, each line after the node's endpoint, and a ``dry run:``
  summary line per node; ``--json`` gives one object per node (the keys of
  one daemon's ``--json``).  A node that cannot be reached is an error line
  and exit 1; the others are still shown.
- ``--delete``: the files go to every node as without it (chain or star,
  :mod:`zfile.cli.fanout`); then each node whose files all arrived deletes
  what it holds under the trees named that the source does not have, and
  its report line says how many (``--json``: ``deleted``).  A node where
  anything failed deletes nothing and says so; a plan with an entry that
  could not be read deletes nothing anywhere.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from zfile.cli.boundary import EXIT_FAILED
from zfile.cli.fanout import report_json
from zfile.cli.running import run_main
from zfile.cli.transfer import Run, json_summary, nothing_deleted, plan_send, print_dry
from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.client.delete import Deleted, delete_remote, remote_deletions
from zfile.client.fanout import NodeReport, node_label
from zfile.client.filters import Filter
from zfile.client.plan import UploadPlan
from zfile.client.quickcheck import Compare
from zfile.errors import ZfileError


def send_dry(
    configs: Sequence[ClientConfig],
    plan: UploadPlan,
    *,
    compare: Compare,
    filters: Filter,
    delete: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """``send -n --to A,B,...`` (module docstring); exit 1 when a node
    failed or an entry was skipped."""

    async def one(config: ClientConfig) -> tuple[Run, ZfileError | None]:
        result = Run("sent", config.endpoint, True, excluded=list(plan.excluded))
        try:
            async with Client(config) as client:
                await plan_send(client, plan, result, compare=compare, filters=filters, delete=delete)
        except ZfileError as exc:
            return result, exc
        return result, None

    async def go() -> list[tuple[Run, ZfileError | None]]:
        return await asyncio.gather(*(one(c) for c in configs))

    failed = bool(plan.skipped)
    out: list[dict[str, Any]] = []
    said = False
    for result, exc in run_main(go()):
        if exc is not None:
            click.echo(f"zfile: error: {result.endpoint}: {exc}", err=True)
            failed = True
            report = report_json(NodeReport(result.endpoint, node_label(result.endpoint), error=exc))
            out.append({**report, "dry_run": True})
            continue
        if result.no_delete:
            click.echo(f"zfile: --delete: {result.endpoint}: {nothing_deleted(result)}", err=True)
        if as_json:
            out.append(json_summary(result))
        else:
            print_dry(result, quiet, prefix=f"{result.endpoint}  ", skipped_said=said)
            said = True  # the plan's skipped entries are the same for every node: said once
    if as_json:
        click.echo(json.dumps(out, indent=1))
    if failed:
        sys.exit(EXIT_FAILED)


async def delete_everywhere(
    configs: Sequence[ClientConfig], reports: Sequence[NodeReport], plan: UploadPlan, filters: Filter
) -> dict[str, list[Deleted] | str]:
    """After a fan-out send, each node's ``--delete``: endpoint -> what it
    deleted, or why it deleted nothing (a sentence)."""
    if plan.unread:
        more = f" (and {len(plan.unread) - 1} more)" if len(plan.unread) > 1 else ""
        why = f"nothing was deleted, as '{plan.unread[0]}' could not be read{more}"
        return {c.endpoint: why for c in configs}
    ok = {r.endpoint for r in reports if r.ok}

    async def one(config: ClientConfig) -> list[Deleted] | str:
        if config.endpoint not in ok:
            return "nothing was deleted, as its files did not all arrive"
        try:
            async with Client(config) as client:
                return await delete_remote(client, await remote_deletions(client, plan, filters))
        except ZfileError as exc:
            return f"nothing was deleted, as {exc}"

    done = await asyncio.gather(*(one(c) for c in configs))
    return {c.endpoint: d for c, d in zip(configs, done, strict=True)}


__all__ = ["delete_everywhere", "send_dry"]
