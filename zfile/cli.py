"""``zfile`` command line: thin click commands over the library.

Exit codes: 0 done, 1 a transfer failed (or the daemon could not be reached),
2 usage.  Every zfile error becomes one line, ``zfile: error: <sentence>``,
in :func:`_fail`; no traceback reaches the user.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from tqdm import tqdm

from . import __version__
from .batch import Outcome, fetch, plan_download, plan_upload, send_paths
from .client import Client
from .config import ServerConfig
from .endpoint import DEFAULT_ENDPOINT, EndpointError, parse_endpoint
from .errors import ZfileError
from .events import Entry

T = TypeVar("T")
_DEFAULTS = ServerConfig()


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"zfile: error: {message}", err=True)
    sys.exit(code)


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a library coroutine, turning every error into a line and exit 1."""
    try:
        return asyncio.run(coro_fn())
    except ZfileError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted")


def _endpoint(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return parse_endpoint(value)
    except EndpointError as exc:
        raise click.BadParameter(str(exc)) from None


def _progress_bar(total: int, quiet: bool, desc: str) -> tqdm:
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        disable=quiet or not sys.stderr.isatty(),
        leave=False,
    )


def _report(outcomes: Sequence[Outcome], verb: str, began: float, quiet: bool) -> None:
    failed = [o for o in outcomes if o.error is not None]
    for outcome in failed:
        click.echo(f"zfile: error: {outcome.name}: {outcome.error}", err=True)
    done = [o.result for o in outcomes if o.result is not None]
    nbytes = sum(r.size for r in done)
    seconds = max(time.monotonic() - began, 1e-9)
    if not quiet:
        click.echo(
            f"{verb} {len(done)} file(s), {nbytes / 1e6:.1f} MB in {seconds:.2f} s "
            f"({nbytes / seconds / 1e6:.1f} MB/s)" + (f"; {len(failed)} failed" if failed else "")
        )
    if failed:
        sys.exit(1)


endpoint_option = click.option(
    "--to",
    "--from",
    "endpoint",
    envvar="ZFILE_SERVER",
    default=DEFAULT_ENDPOINT,
    show_default=True,
    callback=_endpoint,
    help="Daemon endpoint: tcp://HOST:PORT, HOST:PORT, HOST (port 5555) or ipc://PATH [env ZFILE_SERVER].",
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line.")
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    help="Seconds to wait for any answer from the daemon.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zfile")
def main() -> None:
    """Ship files between machines over ZeroMQ."""


@main.command()
@click.option(
    "--bind",
    envvar="ZFILE_BIND",
    default=DEFAULT_ENDPOINT,
    show_default=True,
    callback=_endpoint,
    help="Endpoint to bind [env ZFILE_BIND].",
)
@click.option(
    "--root",
    envvar="ZFILE_ROOT",
    default="./zfile-data",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Store directory [env ZFILE_ROOT].",
)
@click.option(
    "--max-file-size",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_file_size,
    show_default=True,
    help="Largest upload accepted, in bytes.",
)
@click.option(
    "--max-transfers",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_transfers,
    show_default=True,
    help="Transfers at once; more get 'busy'.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0.1),
    default=_DEFAULTS.idle_timeout,
    show_default=True,
    help="Seconds of peer silence before a transfer is ended.",
)
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0),
    default=_DEFAULTS.grace_period,
    show_default=True,
    help="Seconds running transfers get to finish on SIGTERM.",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def serve(
    bind: str,
    root: str,
    max_file_size: int,
    max_transfers: int,
    idle_timeout: float,
    grace_period: float,
    log_level: str,
) -> None:
    """Run the daemon: receive and serve files under ROOT."""
    from .server import Server

    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = ServerConfig(
        bind=bind,
        root=root,
        max_file_size=max_file_size,
        max_transfers=max_transfers,
        idle_timeout=idle_timeout,
        grace_period=grace_period,
        log_level=log_level.upper(),
    )
    try:
        sys.exit(Server(config).run())
    except ZfileError as exc:
        _fail(str(exc))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@endpoint_option
@click.option("--no-clobber", is_flag=True, help="Fail with 'exists' instead of replacing a stored file.")
@quiet_option
@timeout_option
def send(paths: tuple[str, ...], endpoint: str, no_clobber: bool, quiet: bool, timeout: float) -> None:
    """Send files and directories (recursively) to the daemon."""
    try:
        plan = plan_upload(paths)
    except ZfileError as exc:
        _fail(str(exc))

    async def go() -> list[Outcome]:
        with _progress_bar(sum(size for *_, size in plan), quiet, "send") as bar:
            async with Client(endpoint, timeout=timeout) as client:
                return await send_paths(client, paths, clobber=not no_clobber, progress=bar.update, plan=plan)

    began = time.monotonic()
    _report(_run(go), "sent", began, quiet)


@main.command()
@click.argument("names", nargs=-1, required=True)
@endpoint_option
@click.option(
    "-o",
    "--output",
    "out",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory to write into.",
)
@quiet_option
@timeout_option
def get(names: tuple[str, ...], endpoint: str, out: str, quiet: bool, timeout: float) -> None:
    """Fetch files, or everything under a prefix such as photos/, into OUT."""

    async def go() -> list[Outcome]:
        async with Client(endpoint, timeout=timeout) as client:
            plan = await plan_download(client, names, Path(out))
            with _progress_bar(sum(e.size for e, _ in plan), quiet, "get") as bar:
                return await fetch(client, plan, progress=bar.update)

    began = time.monotonic()
    _report(_run(go), "fetched", began, quiet)


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "size": entry.size,
        "mtime": datetime.fromtimestamp(entry.mtime_ns / 1e9, UTC).isoformat(),
        "mtime_ns": entry.mtime_ns,
        "mode": f"{entry.mode:04o}",
        "digest": entry.digest.hex(),
        "algo": entry.algo,
        "received": datetime.fromtimestamp(entry.received, UTC).isoformat(),
        "peer": entry.peer,
    }


@main.command(name="ls")
@click.argument("prefix", default="")
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="A JSON array of entries.")
@timeout_option
def ls(prefix: str, endpoint: str, as_json: bool, timeout: float) -> None:
    """List stored files (those under PREFIX), streamed page by page."""

    async def go() -> None:
        first = True
        async with Client(endpoint, timeout=timeout) as client:
            if as_json:
                click.echo("[", nl=False)
            async for entry in client.list(prefix):
                if as_json:
                    click.echo(("\n" if first else ",\n") + json.dumps(_entry_json(entry)), nl=False)
                else:
                    when = datetime.fromtimestamp(entry.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")
                    click.echo(f"{entry.size:>14,}  {when}  {entry.digest.hex()[:12]}  {entry.name}")
                first = False
            if as_json:
                click.echo("\n]" if not first else "]")

    _run(go)
