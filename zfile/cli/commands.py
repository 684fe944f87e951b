"""``zfile`` command line: thin click commands over the library.

Errors are not caught here: :mod:`zfile.cli.boundary` turns each into one
line, ``zfile: error: <sentence>``, and an exit code (0 done, 1 a transfer
failed or an entry was skipped, 2 usage, 130 interrupted).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from zfile import __version__
from zfile.cli import fanout, settings
from zfile.cli.boundary import EXIT_FAILED, Group, on_interrupt
from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.client.fanout import read_targets
from zfile.client.quickcheck import Compare, unchanged_downloads, unchanged_uploads
from zfile.client.tree import Outcome, fetch, plan_download, plan_upload, send_paths, shown
from zfile.errors import EndpointError, ErrorCode, LocalFileError, Skipped, TransportError
from zfile.protocol.entries import entry_json
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


# The bar's sizes: MB = 10^6 bytes, as in the summary line, so one unit is on screen.
BAR_UNITS: dict[str, Any] = {
    "unit": "B",
    "unit_scale": True,
    "unit_divisor": 1000,
    # tqdm's default shows "2.50M/5.00M": say which unit, as the rate does.
    "bar_format": "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}, {rate_fmt}]",
}


def _progress_bar(total: int | None, quiet: bool, desc: str) -> tqdm:
    # Imported here: it costs every command's start-up ~20 ms, ls included.
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=quiet or not sys.stderr.isatty(), leave=False, **BAR_UNITS)


class _Tally:
    """Files done out of those planned: shown on the bar, and said on Ctrl-C."""

    def __init__(self, verb: str, total: int, bar: tqdm | None = None) -> None:
        self.verb = verb
        self.total = total
        self.done = 0
        self.bar = bar
        on_interrupt(self.interrupted)
        self._show()

    def file_done(self, outcome: Outcome) -> None:
        if outcome.result is not None:
            self.done += 1
            self._show()

    def _show(self) -> None:
        if self.bar is not None:
            self.bar.set_description_str(f"{self.verb} {self.done}/{self.total} files", refresh=False)

    def interrupted(self) -> str:
        if not self.total:
            return "no file was transferred"
        return f"{self.done} of {self.total} file(s) done; run the same command again to resume the rest"


class _StderrLog(logging.Handler):
    """The library's notes (``resuming NAME at N bytes``) as ``zfile: ...`` lines on stderr."""

    def __init__(self, bar: tqdm) -> None:
        super().__init__(logging.INFO)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        # Through the bar, so that a line never lands in the middle of it.
        self.bar.write(f"zfile: {record.getMessage()}", file=sys.stderr)


@contextlib.contextmanager
def _notes(bar: tqdm, quiet: bool) -> Iterator[None]:
    """Show the client library's INFO notes on stderr while the block runs, unless ``quiet``."""
    if quiet:
        yield
        return
    logger = logging.getLogger("zfile.client")
    handler = _StderrLog(bar)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _report(outcomes: Sequence[Outcome], verb: str, began: float, quiet: bool, unchanged: int = 0) -> None:
    """One line on stderr per entry skipped or failed, the summary on stdout
    (with ``unchanged`` files the quick check skipped), and exit 1 when
    anything the user named was not transferred."""
    skipped = [o for o in outcomes if isinstance(o.error, Skipped)]
    failed = [o for o in outcomes if o.error is not None and not isinstance(o.error, Skipped)]
    for outcome in skipped:
        click.echo(f"zfile: skipped '{outcome.name}': {outcome.error}", err=True)
    # A connection that failed fails every file the same way: say it once, not once a file.
    link_down: dict[str, int] = {}
    # So does a full disk on the daemon, which ends the run (zfile.client.tree.Halt).
    full = [o for o in failed if o.error is not None and o.error.code is ErrorCode.NO_SPACE]
    if full:
        click.echo(f"zfile: error: {full[0].error}; stopped there: {len(full)} file(s) not stored", err=True)
    for outcome in failed:
        if outcome.error is not None and outcome.error.code is ErrorCode.NO_SPACE:
            continue
        if isinstance(outcome.error, TransportError):
            link_down[str(outcome.error)] = link_down.get(str(outcome.error), 0) + 1
        else:
            click.echo(f"zfile: error: {shown(outcome.name)}: {outcome.error}", err=True)
    for sentence, count in link_down.items():
        click.echo(f"zfile: error: {sentence}" + (f" ({count} files)" if count > 1 else ""), err=True)
    done = [o.result for o in outcomes if o.result is not None]
    nbytes = sum(r.size for r in done)
    seconds = max(time.monotonic() - began, 1e-9)
    if not quiet:
        click.echo(
            f"{verb} {len(done)} file(s), {nbytes / 1e6:.1f} MB in {seconds:.2f} s "
            f"({nbytes / seconds / 1e6:.1f} MB/s)"
            + (f"; {unchanged} unchanged" if unchanged else "")
            + (f"; {len(skipped)} skipped" if skipped else "")
            + (f"; {len(failed)} failed" if failed else "")
        )
    if failed or skipped:
        sys.exit(EXIT_FAILED)


@dataclasses.dataclass(frozen=True, slots=True)
class Connection:
    """Where and how a client command reaches the daemon; ``nodes`` are the
    endpoints of a fan-out (``--to A,B`` or ``--to @FILE``), else empty."""

    endpoint: str
    curve: ClientCurve | None = None
    nodes: tuple[str, ...] = ()

    def client(self, timeout: float) -> Client:
        return Client(ClientConfig(self.endpoint, timeout=timeout, curve=self.curve))

    def node_configs(self, timeout: float) -> list[ClientConfig]:
        """One config per fan-out node, or for the one daemon when there are none."""
        return [ClientConfig(node, timeout=timeout, curve=self.curve) for node in self.nodes or (self.endpoint,)]


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
        f"[env ZFILE_SERVER; default {DEFAULT_ENDPOINT}]; for send and get also several, "
        "A,B,C or @FILE (one a line), all at once.",
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
        nodes: tuple[str, ...] = ()
        if fanout.is_node_list(server):
            try:
                nodes = tuple(read_targets(server))
            except LocalFileError as exc:
                raise click.BadParameter(str(exc), param_hint="--to/--from") from None
            server = None
        flags = {"server": server, "server_key": server_key, "client_key": client_key}
        resolved = settings.client_settings(flags, config_path)
        curve = None
        if resolved.server_key is not None and resolved.client_key is not None:
            from zfile.transport import curve as auth  # CURVE only: imported when used

            curve = ClientCurve(
                auth.load_public_key(settings.resolve_path(resolved.server_key)),
                auth.load_keypair(settings.resolve_path(resolved.client_key)),
            )
        return command(*args, conn=Connection(resolved.server, curve, nodes), **kw)

    for option in reversed(_CONNECTION_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def compare_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """-c/--checksum and -I/--ignore-times: how a file is judged unchanged."""
    command = click.option(
        "-I",
        "--ignore-times",
        is_flag=True,
        help="Transfer every file, even those that look unchanged.",
    )(command)
    return click.option(
        "-c",
        "--checksum",
        is_flag=True,
        help="Judge a file unchanged by its BLAKE3 digest (and size), not its size and mtime.",
    )(command)


def _compare(checksum: bool, ignore_times: bool) -> Compare:
    if checksum and ignore_times:
        raise click.UsageError("-c/--checksum and -I/--ignore-times contradict each other")
    return Compare.NONE if ignore_times else Compare.CHECKSUM if checksum else Compare.QUICK


quiet_option = click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress bar, no summary line and no 'resuming' notes; errors and skipped entries are still shown.",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="The per-node report (as with several nodes) as a JSON array."
)
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
    """Ship files between machines over ZeroMQ.

    Sizes are in bytes; MB on the progress bar and in summaries is 10^6 bytes.

    \b
    Examples:
      zfile serve --root /srv/zfile
      zfile send big.bin photos/ --to node7
      zfile get photos/ --from node7 -o ./back
    """


@main.command(short_help="Run the daemon.")
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
    "--max-transfers-per-peer",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_transfers_per_peer,
    show_default=True,
    help="Transfers one client (CURVE key, else connection) may run at once; more get 'busy'.",
)
@click.option(
    "--min-rate",
    type=click.IntRange(min=0),
    default=_DEFAULTS.min_rate,
    show_default=True,
    help="Bytes/s a transfer waiting on its peer must average over each --idle-timeout, or it is ended; 0: none.",
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
    "--max-partials",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_partials,
    show_default=True,
    help="Interrupted uploads' partials kept in all; past it the oldest go first.",
)
@click.option(
    "--max-partial-bytes",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_partial_bytes,
    show_default=True,
    help="Bytes of partials kept in all; past it the oldest go first.",
)
@click.option(
    "--max-partials-per-peer",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_partials_per_peer,
    show_default=True,
    help="Partials kept per peer (CURVE key, else address); past it its oldest go first.",
)
@click.option(
    "--max-partial-bytes-per-peer",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_partial_bytes_per_peer,
    show_default=True,
    help="Bytes of partials kept per peer; past it its oldest go first.",
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
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback --bind without CURVE, or --http without --http-tokens (anyone may connect).",
)
@click.option(
    "--http",
    metavar="HOST:PORT",
    default=None,
    help="Also serve the store over HTTP there; other than loopback only with --http-tokens or --insecure "
    "[env ZFILE_HTTP; default off].",
)
@click.option(
    "--http-tokens",
    type=click.Path(dir_okay=False),
    default=None,
    help="HTTP bearer tokens, one 'TOKEN read|write' a line; re-read on SIGHUP [env ZFILE_HTTP_TOKENS].",
)
@click.option(
    "--http-cert",
    type=click.Path(dir_okay=False),
    default=None,
    help="PEM certificate chain; with --http-key the HTTP front speaks HTTPS [env ZFILE_HTTP_CERT].",
)
@click.option(
    "--http-key",
    type=click.Path(dir_okay=False),
    default=None,
    help="PEM private key of --http-cert [env ZFILE_HTTP_KEY].",
)
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
    config file, else its default.  SIGHUP re-reads the authorized keys and
    the HTTP tokens.

    \b
    Examples:
      zfile serve --root /srv/zfile --http 127.0.0.1:8080
      zfile serve --bind tcp://0.0.0.0:5555 \\
                  --secret-key /etc/zfile/server.key_secret \\
                  --authorized-keys /etc/zfile/authorized_keys
      zfile serve --config /etc/zfile/zfile.toml --check-config
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
        if config.http is not None:
            from zfile.http.access import load_access, load_tls

            load_access(config.http, config.http_tokens, config.insecure)
            load_tls(config.http_cert, config.http_key)
        click.echo(settings.dump("server", config), nl=False)
        return
    setup_logging(config.log_level, config.log_format)
    sys.exit(Server(config).run())


def _name_env_vars(command: click.Command) -> None:
    """Append ``[env ZFILE_<FIELD>]`` to the help of each of ``serve``'s
    options that a ServerConfig field backs, unless its help names it
    already: every such field reads that variable (zfile.cli.settings)."""
    fields = {f.name for f in dataclasses.fields(ServerConfig)}
    for param in command.params:
        if isinstance(param, click.Option) and param.name in fields:
            var = f"ZFILE_{param.name.upper()}"
            if var not in (param.help or ""):
                param.help = f"{param.help} [env {var}]" if param.help else f"[env {var}]"


_name_env_vars(serve)


@main.command(short_help="Write a new CURVE key pair.")
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
    NAME.key_secret (mode 0600), the pair to keep.  Never overwrites a key.

    \b
    Examples:
      zfile keygen --out /etc/zfile --name server      # copy server.key to each client
      zfile keygen --out ~/.config/zfile --name laptop # copy laptop.key to the daemon
    """
    from zfile.transport import curve as auth

    name = name or socket.gethostname() or "zfile"
    public, secret = auth.generate_keypair(out, name)
    key = auth.load_public_key(public).decode()
    click.echo(f"public key  {public}\nkey pair    {secret}\n{key}")


@main.command(short_help="Send files and directories to the daemon.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@endpoint_option
@click.option("--no-clobber", is_flag=True, help="Fail with 'exists' instead of replacing a stored file.")
@compare_options
@click.option(
    "-R",
    "--relative",
    is_flag=True,
    help="Store each path as given (a/x.txt as a/x.txt, not x.txt), as rsync -R does.",
)
@click.option(
    "-L",
    "--copy-links",
    is_flag=True,
    help="Inside directories, send what symbolic links point to instead of skipping them.",
)
@quiet_option
@json_option
@timeout_option
def send(
    paths: tuple[str, ...],
    conn: Connection,
    no_clobber: bool,
    checksum: bool,
    ignore_times: bool,
    relative: bool,
    copy_links: bool,
    quiet: bool,
    as_json: bool,
    timeout: float,
) -> None:
    """Send files and directories (recursively) to the daemon.

    A file is stored under its basename, a directory DIR as DIR/<relative
    path>.  Two paths that would be stored under one name are refused before
    anything is sent (use -R).  A file the daemon already holds with the same
    size and mtime is not sent again and is counted as unchanged (rsync's
    quick check); -c compares digests instead, -I sends everything.  Only
    regular files are sent: symbolic links inside a directory (unless -L),
    special files, empty or unreadable directories and names that are not
    UTF-8 are skipped, one line each on stderr, counted in the summary, and
    make the exit code 1.  Ctrl-C exits 130; sending again resumes each
    unfinished file.  With several nodes (--to A,B or @FILE) every node gets
    the files at once and a report line; exit 1 if any failed.

    \b
    Examples:
      zfile send big.bin photos/ --to node7
      zfile send -R a/x.txt b/x.txt --to node7     # stored as a/x.txt, b/x.txt
      zfile send model.ckpt --to node1,node2,node3   # every node at once
    """
    plan = plan_upload(paths, relative=relative, copy_links=copy_links)
    compare = _compare(checksum, ignore_times)
    if conn.nodes or as_json:
        bar = functools.partial(_progress_bar, quiet=quiet or as_json)
        fanout.send(
            conn.node_configs(timeout),
            plan,
            clobber=not no_clobber,
            compare=compare,
            quiet=quiet,
            as_json=as_json,
            bar=bar,
        )
        return
    unchanged = 0

    async def go() -> list[Outcome]:
        nonlocal unchanged
        async with conn.client(timeout) as client:
            skip = await unchanged_uploads(client, plan.files, compare)
            todo = dataclasses.replace(plan, files=[f for f, same in zip(plan.files, skip, strict=True) if not same])
            unchanged = len(plan.files) - len(todo.files)
            with _progress_bar(sum(size for *_, size in todo.files), quiet, "send") as bar, _notes(bar, quiet):
                tally = _Tally("send", len(todo.files), bar)
                return await send_paths(
                    client, paths, clobber=not no_clobber, progress=bar.update, plan=todo, on_file=tally.file_done
                )

    began = time.monotonic()
    outcomes = _run(go)
    _report(outcomes, "sent", began, quiet, unchanged)


@main.command(short_help="Fetch files or prefixes from the daemon.")
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
@compare_options
@quiet_option
@json_option
@timeout_option
def get(
    names: tuple[str, ...],
    conn: Connection,
    out: str,
    checksum: bool,
    ignore_times: bool,
    quiet: bool,
    as_json: bool,
    timeout: float,
) -> None:
    """Fetch files, or everything under a prefix such as photos/, into OUT.

    NAME writes OUT/<basename>; PREFIX/ writes OUT/<last component>/<relative
    path>.  A name that matches nothing is reported and the others are still
    fetched (exit 1).  A local file that already has the stored file's size
    and mtime is not fetched again and is counted as unchanged; -c compares
    digests instead, -I fetches everything.  Each file is written to
    .NAME.zfile-part (and .NAME.zfile-part.json) beside its destination,
    then renamed; when a get is interrupted these two are kept so that the
    same command resumes, and they are never counted as files: send skips
    them, and get skips a stored file named like them.  Ctrl-C exits 130.
    With several nodes (--from A,B or @FILE) each node's files go to
    OUT/<node>/ (the node's host, or HOST_PORT), all nodes at once, with a
    report line per node; exit 1 if any failed.

    \b
    Examples:
      zfile get big.bin --from node7                 # writes ./big.bin
      zfile get photos/ --from node7 -o ./back       # writes ./back/photos/...
      zfile get logs/ --from @nodes.txt -o ./collected   # ./collected/<node>/logs/...
    """
    compare = _compare(checksum, ignore_times)
    if conn.nodes or as_json:
        bar = functools.partial(_progress_bar, quiet=quiet or as_json)
        fanout.get(conn.node_configs(timeout), names, Path(out), compare=compare, quiet=quiet, as_json=as_json, bar=bar)
        return
    unchanged = 0

    async def go() -> list[Outcome]:
        nonlocal unchanged
        _Tally("get", 0)  # until the names are resolved: nothing done, nothing to resume
        async with conn.client(timeout) as client:
            plan = await plan_download(client, names, Path(out))
            skip = await unchanged_downloads(plan.files, compare)
            todo = dataclasses.replace(plan, files=[f for f, same in zip(plan.files, skip, strict=True) if not same])
            unchanged = len(plan.files) - len(todo.files)
            with _progress_bar(sum(e.size for e, _ in todo.files), quiet, "get") as bar, _notes(bar, quiet):
                tally = _Tally("get", len(todo.files), bar)
                return await fetch(client, todo, progress=bar.update, on_file=tally.file_done)

    began = time.monotonic()
    outcomes = _run(go)
    _report(outcomes, "fetched", began, quiet, unchanged)


def _ls_line(entry: Entry) -> str:
    """One entry as ``ls`` prints it; the name escaped (:func:`shown`): a name
    is the daemon's input, and a control character in it (U+009B is CSI)
    would be obeyed by the terminal."""
    when = datetime.fromtimestamp(entry.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")
    return f"{entry.size:>14,}  {when}  {entry.digest.hex()[:12]}  {shown(entry.name)}"


@main.command(name="ls", short_help="List stored files.")
@click.argument("prefix", default="")
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="A JSON array of entries.")
@timeout_option
def ls(prefix: str, conn: Connection, as_json: bool, timeout: float) -> None:
    """List stored files (those under PREFIX), streamed page by page: size in
    bytes, mtime, the digest's first 12 hex digits, name.

    \b
    Examples:
      zfile ls --from node7
      zfile ls photos/ --from node7
      zfile ls --from node7 --json | jq -r '.[].name'
    """
    if conn.nodes:
        raise click.UsageError("ls lists one daemon at a time")

    async def go() -> None:
        first = True
        async with conn.client(timeout) as client:
            if as_json:
                click.echo("[", nl=False)
            async for entry in client.list(prefix):
                if as_json:
                    click.echo(("\n" if first else ",\n") + json.dumps(entry_json(entry)), nl=False)
                else:
                    click.echo(_ls_line(entry))
                first = False
            if as_json:
                click.echo("\n]" if not first else "]")

    _run(go)
