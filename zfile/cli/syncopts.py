"""The rsync-style options of ``send`` and ``get``: ``--prefix``, the
filters (``--exclude``, ``--include``, ``--exclude-from``), ``-n/--dry-run``,
``--delete``, ``--bwlimit``, and ``send``'s ``--files-from``.  Each
decorator adds its options and hands the command its value, checked (a bad
one is a usage error, exit 2)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from zfile.client.filters import Filter
from zfile.client.pacing import parse_rate
from zfile.client.plan import listed_paths, normalize_prefix
from zfile.errors import BadName, LocalFileError


def _prefix(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    try:
        return normalize_prefix(value or "")
    except BadName as exc:
        raise click.BadParameter(str(exc)) from None


prefix_option = click.option(
    "--prefix",
    metavar="DIR/",
    default=None,
    callback=_prefix,
    help="Store everything under this directory of the daemon's root (datasets/ and datasets are the same).",
)


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--exclude, --include and --exclude-from; the command gets ``filters``,
    a :class:`~zfile.client.filters.Filter`."""

    @functools.wraps(command)
    def wrapper(*args: Any, exclude: tuple[str, ...], include: tuple[str, ...], exclude_from, **kw: Any) -> Any:
        try:
            filters = Filter.from_rules(exclude, include, exclude_from)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--exclude/--include") from None
        except LocalFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--exclude-from") from None
        return command(*args, filters=filters, **kw)

    options = (
        click.option(
            "--exclude",
            multiple=True,
            metavar="PATTERN",
            help="Leave out paths matching this gitignore pattern (relative to each tree); repeatable.",
        ),
        click.option(
            "--include",
            multiple=True,
            metavar="PATTERN",
            help="Take back what an --exclude left out (a gitignore '!PATTERN'); repeatable.",
        ),
        click.option(
            "--exclude-from",
            multiple=True,
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help="Read patterns from FILE, one a line, as a .gitignore; repeatable.",
        ),
    )
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


dry_run_option = click.option(
    "-n",
    "--dry-run",
    is_flag=True,
    help="Say what would be transferred, left unchanged and deleted; change nothing.",
)


def delete_option(where: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--delete",
        is_flag=True,
        help=f"Once every transfer succeeded, delete {where} what the source no longer has "
        "under each tree named (not excluded files).",
    )


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


bwlimit_option = click.option(
    "--bwlimit",
    metavar="RATE",
    default=None,
    callback=_rate,
    help="Most bytes per second for the whole command: 500K, 50M, 1.5G (K = 1024, as rsync); 0 for no limit.",
)


def files_from_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--files-from FILE`` and ``-0/--from0`` (rsync's): the command gets
    ``paths`` as the listed paths joined to its one PATH (the directory
    they are relative to, ``.`` by default) and ``base``, that directory;
    without ``--files-from``, its paths as given and ``base`` None."""

    @functools.wraps(command)
    def wrapper(*args: Any, paths: tuple[str, ...], files_from: str | None, from0: bool, **kw: Any) -> Any:
        if files_from is None:
            if from0:
                raise click.UsageError("-0/--from0 goes with --files-from")
            if not paths:
                raise click.UsageError("Missing argument 'PATHS...'.")
            return command(*args, paths=paths, base=None, **kw)
        if len(paths) > 1 or "-" in paths:
            raise click.UsageError("--files-from takes one PATH at most, not -: the directory its paths are below")
        base = paths[0] if paths else "."
        try:
            if files_from == "-":
                data = sys.stdin.buffer.read()
            else:
                with open(files_from, "rb") as f:
                    data = f.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {files_from}: {exc.strerror}", param_hint="--files-from") from None
        listed = listed_paths(data, nul=from0)
        if not listed:
            raise click.BadParameter(f"{files_from} names no path to send", param_hint="--files-from")
        return command(*args, paths=tuple(os.path.join(base, p) for p in listed), base=base, **kw)

    options = (
        click.option(
            "--files-from",
            metavar="FILE",
            default=None,
            help="Send the paths FILE lists (- reads stdin), one a line, relative to PATH (default .), "
            "each stored as listed, as rsync --files-from does.",
        ),
        click.option("-0", "--from0", is_flag=True, help="--files-from's paths end with NUL (find -print0)."),
    )
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


__all__ = [
    "bwlimit_option",
    "delete_option",
    "dry_run_option",
    "files_from_options",
    "filter_options",
    "prefix_option",
]
