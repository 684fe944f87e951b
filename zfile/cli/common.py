"""What the client commands share: the connection options, the progress
bar, the per-run tally and the summary line.

Errors are not caught here: :mod:`zfile.cli.boundary` turns each into one
line and an exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

from zfile.cli import fanout, settings
from zfile.cli.boundary import EXIT_FAILED, on_interrupt
from zfile.cli.running import run_main
from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.client.fanout import read_targets
from zfile.client.plan import Outcome, shown
from zfile.client.quickcheck import Compare
from zfile.errors import EndpointError, ErrorCode, LocalFileError, Skipped, TransportError
from zfile.transport.dealer import ClientCurve
from zfile.transport.endpoint import DEFAULT_ENDPOINT, parse_endpoint

if TYPE_CHECKING:
    from tqdm import tqdm

T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a library coroutine to its end (its errors reach the boundary)."""
    return run_main(coro_fn())


def endpoint_callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
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


class NoBar:
    """What :func:`progress_bar` gives when no bar is shown: the calls a
    tqdm bar takes here, doing nothing but :meth:`write`."""

    def __enter__(self) -> NoBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def update(self, n: float = 1) -> None:
        return None

    def set_description_str(self, desc: str, refresh: bool = True) -> None:
        return None

    def write(self, s: str, file: TextIO | None = None) -> None:
        print(s, file=file or sys.stdout)


def progress_bar(total: int | None, quiet: bool, desc: str) -> tqdm | NoBar:
    """A tqdm bar of ``total`` bytes (None: a count without one) on stderr,
    or a :class:`NoBar` when ``quiet`` or stderr is not a terminal."""
    if quiet or not sys.stderr.isatty():
        # Without importing tqdm: it costs a command's start-up ~15 ms, and
        # scripts and jobs, which show no bar, are where start-up counts.
        return NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, **BAR_UNITS)


class Tally:
    """Files done out of those planned: shown on the bar, and said on Ctrl-C."""

    def __init__(self, verb: str, total: int, bar: tqdm | NoBar | None = None) -> None:
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


class StderrLog(logging.Handler):
    """The library's notes (``resuming NAME at N bytes``) as ``zfile: ...`` lines on stderr."""

    def __init__(self, bar: tqdm | NoBar) -> None:
        super().__init__(logging.INFO)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        # Through the bar, so that a line never lands in the middle of it.
        self.bar.write(f"zfile: {record.getMessage()}", file=sys.stderr)


@contextlib.contextmanager
def notes(bar: tqdm | NoBar, quiet: bool) -> Iterator[None]:
    """Show the client library's INFO notes on stderr while the block runs, unless ``quiet``."""
    if quiet:
        yield
        return
    logger = logging.getLogger("zfile.client")
    handler = StderrLog(bar)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def report(
    outcomes: Sequence[Outcome],
    verb: str,
    began: float,
    quiet: bool,
    unchanged: int = 0,
    *,
    deleted: int = 0,
    excluded: int = 0,
    other_failed: int = 0,
) -> None:
    """One line on stderr per entry skipped or failed, the summary on stdout
    (with ``unchanged`` files the quick check skipped, ``deleted`` files
    ``--delete`` removed, ``excluded`` entries the filters left out and
    ``other_failed`` failures already said, such as deletions), and exit 1
    when anything the user named was not transferred."""
    skipped = [o for o in outcomes if isinstance(o.error, Skipped)]
    failed = [o for o in outcomes if o.error is not None and not isinstance(o.error, Skipped)]
    for outcome in skipped:
        click.echo(f"zfile: skipped '{outcome.name}': {outcome.error}", err=True)
    # A connection that failed fails every file the same way: say it once, not once a file.
    link_down: dict[str, int] = {}
    # So does a full disk, the daemon's or (a download) this side's, which ends the run (zfile.client.tree.Halt).
    full = [o for o in failed if o.error is not None and o.error.code is ErrorCode.NO_SPACE]
    if full:
        not_done = "not fetched" if verb == "fetched" else "not stored"
        click.echo(f"zfile: error: {full[0].error}; stopped there: {len(full)} file(s) {not_done}", err=True)
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
            f"; {unchanged} unchanged; {deleted} deleted; {len(failed) + other_failed} failed"
            + (f"; {excluded} excluded" if excluded else "")
            + (f"; {len(skipped)} skipped" if skipped else "")
        )
    if failed or skipped or other_failed:
        sys.exit(EXIT_FAILED)


@dataclasses.dataclass(frozen=True, slots=True)
class Connection:
    """Where and how a client command reaches the daemon; ``nodes`` are the
    endpoints of a fan-out (``--to A,B`` or ``--to @FILE``), else empty."""

    endpoint: str
    curve: ClientCurve | None = None
    nodes: tuple[str, ...] = ()

    def client(self, timeout: float, bwlimit: int | None = None) -> Client:
        return Client(ClientConfig(self.endpoint, timeout=timeout, curve=self.curve, bwlimit=bwlimit))

    def node_configs(self, timeout: float, bwlimit: int | None = None) -> list[ClientConfig]:
        """One config per fan-out node, or for the one daemon when there are
        none; ``bwlimit`` (bytes per second) is for the whole command, so
        each of N nodes gets an Nth of it."""
        nodes = self.nodes or (self.endpoint,)
        share = max(1, bwlimit // len(nodes)) if bwlimit else None
        return [ClientConfig(node, timeout=timeout, curve=self.curve, bwlimit=share) for node in nodes]


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


def compare_mode(checksum: bool, ignore_times: bool) -> Compare:
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
    "--json",
    "as_json",
    is_flag=True,
    help="The report as a JSON array of one object per node; for one daemon also its counts and each file's result.",
)
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    help="Seconds to wait for any answer from the daemon.",
)
