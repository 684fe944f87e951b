"""``zfile`` command line: thin click commands over the library.

Errors are not caught here: :mod:`zfile.cli.boundary` turns each into one
line, ``zfile: error: <sentence>``, and an exit code (0 done, 1 a transfer
failed, 2 usage).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from zfile import __version__
from zfile.cli import settings
from zfile.cli.boundary import EXIT_FAILED, Group
from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.client.tree import Outcome, fetch, plan_download, plan_upload, send_paths
from zfile.errors import EndpointError
from zfile.protocol.events import Entry
from zfile.server.config import ServerConfig
from zfile.transport.endpoint import DEFAULT_ENDPOINT, parse_endpoint
from zfile.transport.sockets import ClientCurve

if TYPE_CHECKING:
    from tqdm import tqdm

T = TypeVar("T")
_DEFAULTS = ServerConfig()


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a library coroutine to its end (its errors reach the boundary)."""
    return asyncio.run(coro_fn())


def _endpoint(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return parse_endpoint(value)
    except EndpointError as exc:
        raise click.BadParameter(str(exc)) from None


def _progress_bar(total: int, quiet: bool, desc: str) -> tqdm:
    # Imported here: it costs every command's start-up ~20 ms, ls included.
    from tqdm import tqdm

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
        sys.exit(EXIT_FAILED)


@dataclasses.dataclass(frozen=True, slots=True)
class Connection:
    """Where and how a client command reaches the daemon."""

    endpoint: str
    curve: ClientCurve | None = None

    def client(self, timeout: float) -> Client:
        return Client(ClientConfig(self.endpoint, timeout=timeout, curve=self.curve))


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"TOML config file [env ZFILE_CONFIG; default {settings.DEFAULT_CONFIG_PATH} if it exists].",
)
_CONNECTION_OPTIONS = (
    click.option(
        "--to",
        "--from",
        "server",
        default=None,
        help="Daemon endpoint: tcp://HOST:PORT, HOST:PORT, HOST (port 5555) or ipc://PATH "
        f"[env ZFILE_SERVER; default {DEFAULT_ENDPOINT}].",
    ),
    click.option(
        "--server-key",
        type=click.Path(dir_okay=False),
        default=None,
        help="The daemon's CURVE public key file (.key); turns CURVE on [env ZFILE_SERVER_KEY].",
    ),
    click.option(
        "--client-key",
        type=click.Path(dir_okay=False),
        default=None,
        help="This client's CURVE key pair (.key_secret, from `zfile keygen`) [env ZFILE_CLIENT_KEY].",
    ),
    config_option,
)


def endpoint_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options that say how to reach the daemon; the command gets
    ``conn``, a :class:`Connection` resolved as flags > env > config file."""

    @functools.wraps(command)
    def wrapper(*args: Any, server: str | None, server_key: str | None, client_key: str | None, config_path, **kw):
        flags = {"server": server, "server_key": server_key, "client_key": client_key}
        resolved = settings.client_settings(flags, config_path)
        curve = None
        if resolved.server_key is not None and resolved.client_key is not None:
            from zfile.transport import curve as auth  # CURVE only: imported when used

            curve = ClientCurve(
                auth.load_public_key(settings.resolve_path(resolved.server_key)),
                auth.load_keypair(settings.resolve_path(resolved.client_key)),
            )
        return command(*args, conn=Connection(resolved.server, curve), **kw)

    for option in reversed(_CONNECTION_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line.")
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    help="Seconds to wait for any answer from the daemon.",
)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zfile")
def main() -> None:
    """Ship files between machines over ZeroMQ."""


@main.command()
@click.option(
    "--bind",
    default=DEFAULT_ENDPOINT,
    show_default=True,
    callback=_endpoint,
    help="Endpoint to bind; other than loopback only with CURVE or --insecure [env ZFILE_BIND].",
)
@click.option(
    "--root",
    default="./zfile-data",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Store directory [env ZFILE_ROOT].",
)
@click.option(
    "--store",
    default=None,
    help="Where files are kept: a directory or s3://BUCKET/PREFIX/ [default: --root; env ZFILE_STORE].",
)
@click.option(
    "--s3-endpoint",
    default=None,
    help="URL of the S3 endpoint for an s3:// --store [default: AWS S3; env ZFILE_S3_ENDPOINT].",
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
    "--max-name-bytes",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_name_bytes,
    show_default=True,
    help="Longest stored name accepted, in bytes of UTF-8.",
)
@click.option(
    "--partial-ttl",
    type=click.FloatRange(min=0),
    default=_DEFAULTS.partial_ttl,
    show_default=True,
    help="Seconds an interrupted upload's partial is kept for resume.",
)
@click.option(
    "--secret-key",
    type=click.Path(dir_okay=False),
    default=None,
    help="The daemon's CURVE key pair (.key_secret, from `zfile keygen`); with --authorized-keys turns CURVE on.",
)
@click.option(
    "--authorized-keys",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory of client public keys (*.key) allowed in; re-read on SIGHUP.",
)
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --bind without CURVE (anyone may connect).")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(settings.LOG_LEVELS, case_sensitive=False),
)
@click.option("--log-format", default="text", show_default=True, type=click.Choice(settings.LOG_FORMATS))
@config_option
@click.option("--check-config", is_flag=True, help="Validate and print the effective config as TOML, then exit.")
def serve(config_path: str | None, check_config: bool, **flags: Any) -> None:
    """Run the daemon: receive and serve files under ROOT.

    Each setting comes from its flag, else its ZFILE_* environment variable
    (ZFILE_BIND, ZFILE_MAX_TRANSFERS, ...), else the [server] table of the
    config file, else its default.  SIGHUP re-reads the authorized keys.
    """
    from zfile.server.logs import setup_logging
    from zfile.server.server import Server, check_bind

    ctx = click.get_current_context()
    fields = {f.name for f in dataclasses.fields(ServerConfig)}
    given = {
        name: value
        for name, value in flags.items()
        if name in fields and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }
    config = settings.server_config(given, config_path)
    if check_config:
        if config.secret_key is None or config.authorized_keys is None:
            check_bind(config)
        else:
            from zfile.transport import curve as auth

            auth.load_keypair(config.secret_key)
            auth.load_authorized_keys(config.authorized_keys)
        click.echo(settings.dump("server", config), nl=False)
        return
    setup_logging(config.log_level, config.log_format)
    sys.exit(Server(config).run())


@main.command()
@click.option(
    "--out",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory to write NAME.key and NAME.key_secret into.",
)
@click.option("--name", default=None, help="File name stem [default: this host's name].")
def keygen(out: str, name: str | None) -> None:
    """Write a new CURVE key pair: NAME.key, the public key to hand to peers, and
    NAME.key_secret (mode 0600), the pair to keep.  Never overwrites a key."""
    from zfile.transport import curve as auth

    name = name or socket.gethostname() or "zfile"
    public, secret = auth.generate_keypair(out, name)
    key = auth.load_public_key(public).decode()
    click.echo(f"public key  {public}\nkey pair    {secret}\n{key}")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@endpoint_option
@click.option("--no-clobber", is_flag=True, help="Fail with 'exists' instead of replacing a stored file.")
@quiet_option
@timeout_option
def send(paths: tuple[str, ...], conn: Connection, no_clobber: bool, quiet: bool, timeout: float) -> None:
    """Send files and directories (recursively) to the daemon."""
    plan = plan_upload(paths)

    async def go() -> list[Outcome]:
        with _progress_bar(sum(size for *_, size in plan), quiet, "send") as bar:
            async with conn.client(timeout) as client:
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
def get(names: tuple[str, ...], conn: Connection, out: str, quiet: bool, timeout: float) -> None:
    """Fetch files, or everything under a prefix such as photos/, into OUT."""

    async def go() -> list[Outcome]:
        async with conn.client(timeout) as client:
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
def ls(prefix: str, conn: Connection, as_json: bool, timeout: float) -> None:
    """List stored files (those under PREFIX), streamed page by page."""

    async def go() -> None:
        first = True
        async with conn.client(timeout) as client:
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
