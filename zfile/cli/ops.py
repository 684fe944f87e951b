"""``zfile rm``, ``mv``, ``stat`` and ``cat``, file operations on stored
files, and ``zfile ping``, thin over :mod:`zfile.client.ops`.

Errors that end the command are not caught here (:mod:`zfile.cli.boundary`);
what befalls one name of several is said on its own line, ``zfile: error:
'NAME': <sentence>``, the others go on, and the exit code is then 1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import posixpath
import shlex
import sys
import time
from typing import TYPE_CHECKING

import click

from zfile.cli.boundary import EXIT_FAILED, on_interrupt
from zfile.cli.common import Connection, endpoint_option, run, timeout_option
from zfile.cli.listing import human_size, stat_lines
from zfile.client.moves import Moved, holds_files, move_tree
from zfile.client.ops import Removal, Status
from zfile.client.plan import shown
from zfile.errors import ErrorCode, IntegrityError, LocalFileError, RemoteError, ZfileError
from zfile.protocol.entries import entry_json
from zfile.protocol.events import Entry
from zfile.protocol.names import quote_name
from zfile.transport.endpoint import parse_endpoint

if TYPE_CHECKING:
    from zfile.client.client import Client


def _one_daemon(conn: Connection, command: str) -> None:
    if conn.nodes:
        raise click.UsageError(f"{command} works on one daemon at a time")


@click.command(name="rm", short_help="Remove stored files.")
@click.argument("names", nargs=-1, required=True)
@endpoint_option
@click.option(
    "-r",
    "-R",
    "--recursive",
    is_flag=True,
    help="Also remove every file under NAME/ (NAME itself too, when it is a stored file).",
)
@click.option("-n", "--dry-run", is_flag=True, help="Print what would be removed and change nothing.")
@click.option("-v", "--verbose", is_flag=True, help="Print each file removed.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line; errors are still shown.")
@timeout_option
def rm(
    names: tuple[str, ...],
    conn: Connection,
    recursive: bool,
    dry_run: bool,
    verbose: bool,
    quiet: bool,
    timeout: float,
) -> None:
    """Remove stored files from the daemon: the file and its catalog entry.

    A download already running goes on to its end with the old bytes; one
    that starts after gets not-found.  A NAME that is not stored gets an
    error line on stderr and exit 1, and the other names are still removed.
    Without -r, a NAME ending in / is refused, and so is one that is a
    directory of stored files (as rm refuses a directory);
    with -r, NAME and everything under NAME/ go (datasets/2025 removes
    datasets/2025/..., never datasets/2025x).  -n prints "would remove NAME"
    for each file and changes nothing.

    \b
    Examples:
      zfile rm old.bin --from node7
      zfile rm -r datasets/2025/ --from node7
      zfile rm -rn logs/ --from node7      # what would go
    """
    _one_daemon(conn, "rm")
    failed = False
    removed: list[Removal] = []

    def error(name: str, sentence: str) -> None:
        nonlocal failed
        failed = True
        click.echo(f"zfile: error: {shown(name)}: {sentence}", err=True)

    async def go() -> None:
        async with conn.client(timeout) as client:
            plain = [n for n in names if not recursive and not n.endswith("/")]
            for name in names:
                if not recursive and name.endswith("/"):
                    error(name, "is a prefix; use -r to remove the files under it")
            for r in await client.remove(plain, dry_run=dry_run):
                if r.error is None:
                    removed.append(r)
                elif isinstance(r.error, RemoteError):  # as rm(1): "Is a directory", not "No such file"
                    hint = f"use rm -r {shown(r.name)}/ to remove the files under it"
                    error(r.name, str(await _directory_error(client, r.name, r.error, hint)))
                else:
                    error(r.name, str(r.error))
            if recursive:
                for name in names:
                    await tree(client, name)

    async def tree(client, name: str) -> None:
        prefix = name.rstrip("/") + "/"
        if prefix == "/":
            error(name, "is no prefix: give one such as 'logs/' (removing every file at once is refused)")
            return
        exact = [] if name.endswith("/") else [name]
        try:
            found = await client.remove(exact, prefix=prefix, dry_run=dry_run)
        except RemoteError as exc:
            if exc.code is ErrorCode.BUSY:
                raise
            error(name, str(exc))
            return
        if exact and found[0].error is not None and found[0].error.code is ErrorCode.NOT_FOUND:
            found = found[1:]  # a prefix alone is no error, if something was under it
            if not found:
                error(name, "is not in the store, nor is anything under " + shown(prefix))
                return
        elif not found:
            error(name, "nothing is stored under it")
            return
        for r in found:
            if r.error is None:
                removed.append(r)
            else:
                error(r.name, str(r.error))

    run(go)
    verb = "would remove" if dry_run else "removed"
    if dry_run or verbose:
        for r in removed:
            click.echo(f"{verb} {shown(r.name)}")
    if not quiet:
        click.echo(f"{verb} {len(removed)} file(s)")
    if failed:
        sys.exit(EXIT_FAILED)


@click.command(name="mv", short_help="Rename a stored file or directory.")
@click.argument("old")
@click.argument("new")
@endpoint_option
@click.option("-f", "--force", is_flag=True, help="Replace stored files of the new names (into a directory: merge).")
@click.option(
    "-T",
    "--no-target-directory",
    "exact",
    is_flag=True,
    help="NEW is the new name itself, never a directory to move into (as GNU mv -T).",
)
@click.option("-v", "--verbose", is_flag=True, help="Print each rename done.")
@timeout_option
def mv(old: str, new: str, conn: Connection, force: bool, exact: bool, verbose: bool, timeout: float) -> None:
    """Rename the stored file or directory OLD to NEW on the daemon, as mv(1)
    does: a NEW ending in /, or naming a directory in the store, means
    NEW/<basename of OLD>, unless -T.

    A file moves in one step on a local store: a reader finds it under OLD
    or under NEW, never under both or neither, and a download already
    running goes on.  On S3 it is a copy then a delete (docs/s3.md).  A
    stored NEW is refused (exit 1) unless -f; a NEW the daemon would refuse
    for an upload (.., absolute, control characters, .zfile/...) is refused
    the same way.

    A directory (OLD/, or an OLD with files under it) moves file by file,
    each in one step as above; the tree as a whole does not: while it runs a
    reader finds some files under each name, and a failure or Ctrl-C
    leaves the rest where they were (the message gives the command, with -f
    and -T, that moves them).  A NEW directory that already holds files is
    refused unless -f, which merges into it.  Prints how many files moved;
    exit 1 if any could not be.

    \b
    Examples:
      zfile mv build.tar builds/2026-12-01.tar --from node7
      zfile mv -f staging/model.ckpt model.ckpt --from node7
      zfile mv datasets/2025/ archive/ --from node7   # archive/2025/...
    """
    _one_daemon(conn, "mv")

    async def go() -> Entry | tuple[str, str, list[Moved]]:
        async with conn.client(timeout) as client:
            if not old.endswith("/"):
                try:
                    return await _move_file(client, old, new, force, exact)
                except RemoteError as exc:
                    if exc.code is not ErrorCode.NOT_FOUND or not await _has_below(client, old):
                        raise
            src = old.rstrip("/") + "/"
            target = await _dir_target(client, src, new, force, exact)
            return src, target, await _move_dir(client, src, target, force, conn.endpoint)

    done = run(go)
    if isinstance(done, Entry):
        if verbose:
            click.echo(f"renamed {shown(old)} -> {shown(done.name)}")
        return
    src, target, moved = done
    failed = [m for m in moved if m.error is not None]
    for m in moved:
        if m.error is not None:
            click.echo(f"zfile: error: {shown(m.name)}: {m.error}", err=True)
        elif verbose and m.entry is not None:
            click.echo(f"renamed {shown(m.name)} -> {shown(m.entry.name)}")
    click.echo(f"moved {len(moved) - len(failed)} file(s)" + (f"; {len(failed)} failed" if failed else ""))
    if failed:
        finish = _finish(src, target, conn.endpoint)
        click.echo(f"zfile: once the files refused can move, {finish} moves them", err=True)
        sys.exit(EXIT_FAILED)


def _finish(src: str, target: str, endpoint: str) -> str:
    # -T: run again, the new tree now holds files, and without it the rest would go into it.
    return f"zfile mv -f -T {shlex.quote(src)} {shlex.quote(target)} --from {shlex.quote(endpoint)}"


async def _move_file(client: Client, old: str, new: str, force: bool, exact: bool) -> Entry:
    if exact:
        target = new.rstrip("/")
    elif new.endswith("/"):
        target = new + posixpath.basename(old)
    elif await _has_below(client, new):
        target = f"{new}/{posixpath.basename(old)}"
    else:
        target = new
    try:
        return await client.move(old, target, clobber=force)
    except RemoteError as exc:
        if exc.code is ErrorCode.EXISTS:
            raise RemoteError(f"{exc}; -f/--force replaces it", code=exc.code) from None
        raise


async def _dir_target(client: Client, src: str, new: str, force: bool, exact: bool) -> str:
    """Where ``src`` (ending in /) goes as mv(1) moves a directory: to NEW,
    or into NEW when NEW already holds files (not with ``exact``, -T); the
    refusals before anything moves."""
    base = posixpath.basename(src.rstrip("/"))
    where = new.strip("/")
    if where and not new.endswith("/") and await _is_stored(client, where):
        raise ZfileError(
            f"cannot move the directory {quote_name(src)} onto the stored file {quote_name(where)}",
            code=ErrorCode.EXISTS,
        )
    if exact and not where:
        raise ZfileError("-T needs a NEW directory name, not the store's root", code=ErrorCode.BAD_REQUEST)
    into = not exact and (not where or await _has_below(client, where))
    target = (f"{where}/{base}/" if where else f"{base}/") if into else f"{where}/"
    if target.startswith(src):
        raise ZfileError(f"cannot move {quote_name(src)} into itself, {quote_name(target)}", code=ErrorCode.BAD_REQUEST)
    if not force and await holds_files(client, target):
        raise ZfileError(
            f"{quote_name(target)} already holds files; -f/--force moves into it, replacing files of the same names",
            code=ErrorCode.EXISTS,
        )
    return target


async def _move_dir(client: Client, src: str, target: str, force: bool, endpoint: str) -> list[Moved]:
    count = 0

    def one_more(moved: Moved) -> None:
        nonlocal count
        count += moved.error is None

    on_interrupt(lambda: f"{count} file(s) of {src} moved to {target}; {_finish(src, target, endpoint)} moves the rest")
    return await move_tree(client, src, target, clobber=force, on_file=one_more)


async def _is_stored(client: Client, name: str) -> bool:
    try:
        await client.stat(name)
    except RemoteError as exc:
        if exc.code is ErrorCode.NOT_FOUND:
            return False
        raise
    return True


async def _has_below(client: Client, name: str) -> bool:
    """Whether the daemon stores a file under ``name/`` (one LIST of one
    entry); a prefix it refuses is no directory, and the request that
    follows says why."""
    try:
        return await holds_files(client, f"{name}/")
    except RemoteError:
        return False


async def _directory_error(client: Client, name: str, exc: RemoteError, hint: str) -> RemoteError:
    """``exc``, or, when it says ``name`` is not stored while files are
    stored below ``name/``, the error saying ``name`` is a directory, then
    ``hint`` (mv(1) and cat(1) tell a directory from a missing path too)."""
    if exc.code is not ErrorCode.NOT_FOUND or not await _has_below(client, name):
        return exc
    return RemoteError(f"{quote_name(name)} is a directory in the store; {hint}", code=exc.code)


@click.command(name="stat", short_help="Show stored files' entries.")
@click.argument("names", nargs=-1, required=True)
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="A JSON array of entries, as ls --json prints them.")
@timeout_option
def stat(names: tuple[str, ...], conn: Connection, as_json: bool, timeout: float) -> None:
    """Show each stored file's catalog entry: size in bytes, mtime (ISO 8601
    UTC to the nanosecond, and ns since the epoch), mode, digest algorithm
    and hex digest, when the daemon received it (recv) and from whom (peer:
    CURVE key or address).  A NAME that is not stored gets an error line on
    stderr and exit 1; the others are still shown.

    \b
    Examples:
      zfile stat big.bin --from node7
      zfile stat a.txt b.txt --from node7 --json | jq -r '.[].digest'
    """
    _one_daemon(conn, "stat")

    async def go() -> list[Entry | BaseException]:
        async with conn.client(timeout) as client:
            results = await asyncio.gather(*(client.stat(n) for n in names), return_exceptions=True)
            for k, (name, result) in enumerate(zip(names, results, strict=True)):
                if isinstance(result, RemoteError):
                    results[k] = await _directory_error(client, name, result, "ls lists what is under it")
            return results

    results = run(go)
    found: list[Entry] = []
    failed = False
    for name, result in zip(names, results, strict=True):
        if isinstance(result, RemoteError):
            failed = True
            click.echo(f"zfile: error: {shown(name)}: {result}", err=True)
        elif isinstance(result, BaseException):
            raise result
        else:
            found.append(result)
    if as_json:
        click.echo(json.dumps([entry_json(e) for e in found], indent=1))
    else:
        click.echo("\n\n".join("\n".join(stat_lines(e)) for e in found))
    if failed:
        sys.exit(EXIT_FAILED)


def send_stdin(
    conn: Connection,
    paths: tuple[str, ...],
    name: str | None,
    *,
    clobber: bool,
    quiet: bool,
    timeout: float,
    extra: bool,
) -> None:
    """``zfile send - --name NAME``: store stdin, read to its end, as NAME
    (Client.put_stream); a summary line on stdout unless ``quiet``."""
    if paths != ("-",) or not name:
        raise click.UsageError("- (stdin) is sent alone and needs --name NAME; --name is only for -")
    if conn.nodes or extra:
        raise click.UsageError(
            "- (stdin) goes to one daemon, without -c, -I, -R, -L, --prefix, filters, -n, --delete, --bwlimit or --json"
        )
    if sys.stdin is None:  # started with stdin closed (<&-): Python gives no stream
        raise LocalFileError("- (stdin) is closed: there is nothing to send")
    began = time.monotonic()

    async def go():
        async with conn.client(timeout) as client:
            # The raw file: nothing has read stdin yet, so its buffer holds nothing, and a
            # read left waiting in the reader's thread holds no lock that exiting (Ctrl-C,
            # a refusal) must take (zfile.client.pipe).
            return await client.put_stream(sys.stdin.buffer.raw, name, clobber=clobber)

    sent = run(go)
    seconds = max(time.monotonic() - began, 1e-9)
    if not quiet:
        click.echo(f"sent {shown(sent.name)}, {sent.size / 1e6:.1f} MB in {seconds:.2f} s")


@click.command(name="cat", short_help="Write a stored file to stdout.")
@click.argument("name")
@endpoint_option
@timeout_option
def cat(name: str, conn: Connection, timeout: float) -> None:
    """Write the stored file NAME to stdout as it arrives, chunk by chunk
    (memory stays within the credit window, 8 MiB, whatever the file's size).

    The BLAKE3 digest is checked after the last byte.  On a mismatch zfile
    exits 1 with an error on stderr, but the bytes already written to stdout
    cannot be taken back: treat the output of a cat that failed as garbage
    (check the exit status, or `set -o pipefail`), and use `zfile get` when a
    file must be verified before anything reads it.  When the reader of the
    pipe leaves early (`| head`), zfile stops the download and exits 141
    without a message, as cat does when SIGPIPE ends it.

    \b
    Examples:
      zfile cat logs/app.log --from node7 | grep ERROR
      zfile cat data.csv --from node7 | head -n 5
    """
    write_stdout(conn, name, timeout)


def write_stdout(conn: Connection, name: str, timeout: float, command: str = "cat") -> None:
    """The stored file ``name`` to stdout, digest checked at the end (zfile
    cat, zfile get -o -); ``command`` names the one the user ran."""
    _one_daemon(conn, command)
    out = sys.stdout.buffer

    async def go() -> int:
        async with conn.client(timeout) as client:
            try:
                return await client.cat(name, out)
            except IntegrityError as exc:
                raise IntegrityError(f"{exc}; the bytes already written to stdout cannot be taken back") from None
            except RemoteError as exc:
                raise await _directory_error(client, name, exc, f"{command} prints one stored file") from None

    run(go)  # a reader gone early ends it with 141 (zfile.cli.boundary)


def ping_json(endpoint: str, status: Status) -> dict[str, object]:
    """``status`` as ``zfile ping --json`` prints it; units in the keys."""
    return {
        "endpoint": endpoint,
        "version": status.version,
        "protocol": status.protocol,
        "uptime_s": round(status.uptime, 3),
        "free_bytes": status.free,
        "transfers": status.transfers,
        "curve": status.curve,
        "read_only": status.read_only,
        "rtt_ms": round(status.rtt * 1000, 3),
    }


@click.command(name="ping", short_help="Ask a daemon how it is.")
@click.argument("endpoint", required=False)
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object; units in the keys (_s, _bytes, _ms).")
@timeout_option
def ping(endpoint: str | None, conn: Connection, as_json: bool, timeout: float) -> None:
    """Ask the daemon at ENDPOINT (or --from, $ZFILE_SERVER) for its zfile
    and protocol versions, uptime (s), free space for new files (bytes, and
    as ls -h shows them; none on an object store), transfers in flight,
    whether CURVE is on and whether it is read-only (serve --read-only),
    and measure the round trip (ms).  A daemon with every transfer slot taken
    still answers; one that does not answer within --timeout is an error
    (exit 1).

    \b
    Examples:
      zfile ping node7
      zfile ping --from node7 --server-key node7.key --client-key me.key_secret --json
    """
    _one_daemon(conn, "ping")
    if endpoint is not None:
        conn = dataclasses.replace(conn, endpoint=parse_endpoint(endpoint))

    async def go() -> Status:
        async with conn.client(timeout) as client:
            return await client.ping()

    status = run(go)
    if as_json:
        click.echo(json.dumps(ping_json(conn.endpoint, status)))
        return
    free = "no limit (object store)" if status.free is None else f"{status.free} bytes ({human_size(status.free)})"
    for label, value in [
        ("endpoint", conn.endpoint),
        ("version", f"{status.version} (protocol {status.protocol})"),
        ("uptime", f"{status.uptime:.1f} s"),
        ("free", free),
        ("transfers", f"{status.transfers} in flight"),
        ("curve", "on" if status.curve else "off"),
        ("access", "read-only" if status.read_only else "read-write"),
        ("rtt", f"{status.rtt * 1000:.2f} ms"),
    ]:
        click.echo(f"{label:>9}: {value}")


__all__ = ["cat", "mv", "ping", "ping_json", "rm", "stat", "write_stdout"]
