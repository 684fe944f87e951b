"""``zfile serve`` and ``zfile keygen``: the daemon's commands.

``serve`` only builds a :class:`~zfile.server.config.ServerConfig` (flags >
env > config file > defaults) and calls :meth:`Server.run`.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import sys
from typing import Any

import click
from click.core import ParameterSource

from zfile.cli import settings
from zfile.cli.common import config_option, endpoint_callback
from zfile.server.config import ServerConfig
from zfile.transport.endpoint import DEFAULT_ENDPOINT

_DEFAULTS = ServerConfig()


@click.command(short_help="Run the daemon.")
@click.option(
    "--bind",
    default=DEFAULT_ENDPOINT,
    show_default=True,
    callback=endpoint_callback,
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
    "--forward",
    is_flag=True,
    default=None,
    help="Forward uploads along the chain the client names (send --fanout chain), with this daemon's key pair.",
)
@click.option(
    "--read-only",
    is_flag=True,
    default=None,
    help="Serve the store read-only: refuse every upload, remove and move (ZeroMQ and HTTP).",
)
@click.option(
    "--adopt",
    is_flag=True,
    default=None,
    help="At start, hash and record the files under ROOT the catalog does not list (a catalog lost, "
    "a tree copied in by hand), so that they are served; logged, one line per file skipped.",
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
    from zfile.server.process import raise_open_file_limit

    # Before the store's modules are imported: they size a descriptor budget from the limit.
    raised = None if check_config else raise_open_file_limit()
    from zfile.server.config import check_bind
    from zfile.server.server import Server

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
    if raised is not None:
        logging.getLogger("zfile.server").info("raised the open-file limit from %d to %d", *raised)
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


@click.command(short_help="Write a new CURVE key pair.")
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
