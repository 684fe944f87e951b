"""``zfile`` command line: thin click commands over the library.

Errors are not caught here: :mod:`zfile.cli.boundary` turns each into one
line, ``zfile: error: <sentence>``, and an exit code (0 done, 1 a transfer
failed or an entry was skipped, 2 usage, 130 interrupted).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from datetime import datetime
from pathlib import Path

import click

from zfile import __version__
from zfile.cli import fanout
from zfile.cli.boundary import Group
from zfile.cli.common import (
    Connection,
    Tally,
    compare_mode,
    compare_options,
    endpoint_option,
    json_option,
    notes,
    progress_bar,
    quiet_option,
    report,
    run,
    timeout_option,
)
from zfile.cli.serve import keygen, serve
from zfile.client.quickcheck import unchanged_downloads, unchanged_uploads
from zfile.client.tree import Outcome, fetch, plan_download, plan_upload, send_paths, shown
from zfile.protocol.entries import entry_json
from zfile.protocol.events import Entry


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


main.add_command(serve)
main.add_command(keygen)


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
@click.option(
    "--fanout",
    "fan_mode",
    type=click.Choice(["chain", "star"]),
    default="chain",
    show_default=True,
    help="With several nodes: chain streams each large file to the first node, which forwards it "
    "(daemons need --forward); star sends to every node directly.",
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
    fan_mode: str,
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
    the files and a report line; exit 1 if any failed.  Files over 256 KiB
    go along a chain (--fanout chain, the default: the first node forwards
    to the next as bytes arrive, so N nodes take about the time of one; the
    daemons need --forward), smaller ones, and all with --fanout star, to
    every node at once.

    \b
    Examples:
      zfile send big.bin photos/ --to node7
      zfile send -R a/x.txt b/x.txt --to node7     # stored as a/x.txt, b/x.txt
      zfile send model.ckpt --to node1,node2,node3   # a chain: node1 forwards to node2...
    """
    plan = plan_upload(paths, relative=relative, copy_links=copy_links)
    compare = compare_mode(checksum, ignore_times)
    if conn.nodes or as_json:
        bar = functools.partial(progress_bar, quiet=quiet or as_json)
        fanout.send(
            conn.node_configs(timeout),
            plan,
            clobber=not no_clobber,
            compare=compare,
            quiet=quiet,
            as_json=as_json,
            bar=bar,
            fanout=fan_mode,
        )
        return
    unchanged = 0

    async def go() -> list[Outcome]:
        nonlocal unchanged
        async with conn.client(timeout) as client:
            skip = await unchanged_uploads(client, plan.files, compare)
            todo = dataclasses.replace(plan, files=[f for f, same in zip(plan.files, skip, strict=True) if not same])
            unchanged = len(plan.files) - len(todo.files)
            with progress_bar(sum(size for *_, size in todo.files), quiet, "send") as bar, notes(bar, quiet):
                tally = Tally("send", len(todo.files), bar)
                return await send_paths(
                    client, paths, clobber=not no_clobber, progress=bar.update, plan=todo, on_file=tally.file_done
                )

    began = time.monotonic()
    outcomes = run(go)
    report(outcomes, "sent", began, quiet, unchanged)


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
    compare = compare_mode(checksum, ignore_times)
    if conn.nodes or as_json:
        bar = functools.partial(progress_bar, quiet=quiet or as_json)
        fanout.get(conn.node_configs(timeout), names, Path(out), compare=compare, quiet=quiet, as_json=as_json, bar=bar)
        return
    unchanged = 0

    async def go() -> list[Outcome]:
        nonlocal unchanged
        Tally("get", 0)  # until the names are resolved: nothing done, nothing to resume
        async with conn.client(timeout) as client:
            plan = await plan_download(client, names, Path(out))
            skip = await unchanged_downloads(plan.files, compare)
            todo = dataclasses.replace(plan, files=[f for f, same in zip(plan.files, skip, strict=True) if not same])
            unchanged = len(plan.files) - len(todo.files)
            with progress_bar(sum(e.size for e, _ in todo.files), quiet, "get") as bar, notes(bar, quiet):
                tally = Tally("get", len(todo.files), bar)
                return await fetch(client, todo, progress=bar.update, on_file=tally.file_done)

    began = time.monotonic()
    outcomes = run(go)
    report(outcomes, "fetched", began, quiet, unchanged)


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

    run(go)
