"""``zfile`` command line: thin click commands over the library.

Errors are not caught here: :mod:`zfile.cli.boundary` turns each into one
line, ``zfile: error: <sentence>``, and an exit code (0 done, 1 a transfer
failed or an entry was skipped, 2 usage, 130 interrupted).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from zfile import __version__
from zfile.cli import fanout, fansync, listing, transfer
from zfile.cli.boundary import Group
from zfile.cli.common import (
    Connection,
    compare_mode,
    compare_options,
    endpoint_option,
    json_option,
    progress_bar,
    quiet_option,
    run,
    timeout_option,
)
from zfile.cli.ops import cat, mv, ping, rm, send_stdin, stat, write_stdout
from zfile.cli.serve import keygen, serve
from zfile.cli.syncopts import (
    bwlimit_option,
    delete_option,
    dry_run_option,
    files_from_options,
    filter_options,
    prefix_option,
)
from zfile.client.filters import Filter
from zfile.client.plan import plan_upload
from zfile.errors import ErrorCode, RemoteError


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
main.add_command(rm)
main.add_command(mv)
main.add_command(stat)
main.add_command(cat)
main.add_command(ping)


@main.command(short_help="Send files and directories to the daemon.")
@click.argument("paths", nargs=-1, metavar="PATHS...", type=click.Path(exists=True, allow_dash=True))
@endpoint_option
@click.option("--no-clobber", is_flag=True, help="Fail with 'exists' instead of replacing a stored file.")
@click.option("--name", default=None, help="With - (stdin): the name to store it under.")
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
@prefix_option
@filter_options
@files_from_options
@dry_run_option
@delete_option("on the daemon")
@bwlimit_option
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
    name: str | None,
    checksum: bool,
    ignore_times: bool,
    relative: bool,
    copy_links: bool,
    prefix: str,
    filters: Filter,
    base: str | None,
    dry_run: bool,
    delete: bool,
    bwlimit: int | None,
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

    --prefix DIR/ stores everything under DIR.  --exclude, --include and
    --exclude-from take gitignore patterns, matched against paths relative
    to each directory named (a file named on its own: its basename); the
    last matching rule decides, --include after --exclude.  -n shows what
    would be sent, left unchanged and deleted, and changes nothing.
    --delete removes from the daemon, under each directory named, the
    stored files the directory no longer has (never excluded ones), once
    every file was sent; a run with a failure deletes nothing.  With
    several nodes both work per node (a node's lines after its endpoint;
    --delete on each node that got every file).  --bwlimit
    paces the bytes sent (K = 1024).  --files-from FILE sends the paths
    FILE lists, relative to the one PATH given (default .), each stored
    under its listed path (blank lines and lines starting with # or ; are
    left out; -0 for NUL-ended paths); a listed directory goes whole.

    \b
    Examples:
      zfile send big.bin photos/ --to node7
      zfile send model.ckpt --to node1,node2,node3   # a chain: node1 forwards to node2...
      zfile send data/ --prefix datasets/ --exclude '*.tmp' --delete -n --to node7
      tar c build/ | zfile send - --name builds/build.tar --to node7

    The path - reads stdin to its end and stores it under --name (mode 0644, mtime now),
    verified and committed atomically like any file; it cannot resume.  A writer
    that dies ends the pipe as one that finished does, so what came is stored:
    use set -o pipefail and check the pipeline's status.
    """
    if base is not None and (delete or name is not None):
        raise click.UsageError("--files-from names files to send: without --delete or --name")
    if "-" in paths or name is not None:
        extra = checksum or ignore_times or relative or copy_links or as_json or bool(prefix) or dry_run or delete
        extra = extra or bwlimit is not None or bool(filters)
        send_stdin(conn, paths, name, clobber=not no_clobber, quiet=quiet, timeout=timeout, extra=extra)
        return
    planner = functools.partial(
        plan_upload, paths, relative=relative, copy_links=copy_links, prefix=prefix, filters=filters, base=base
    )
    compare = compare_mode(checksum, ignore_times)
    if conn.nodes:
        plan = planner()
        configs = conn.node_configs(timeout, bwlimit)
        if dry_run:
            fansync.send_dry(
                configs, plan, compare=compare, filters=filters, delete=delete, quiet=quiet, as_json=as_json
            )
            return
        bar = functools.partial(progress_bar, quiet=quiet or as_json)
        after = functools.partial(fansync.delete_everywhere, configs, plan=plan, filters=filters) if delete else None
        fanout.send(
            configs,
            plan,
            clobber=not no_clobber,
            compare=compare,
            quiet=quiet,
            as_json=as_json,
            bar=bar,
            fanout=fan_mode,
            after=after,
        )
        return
    transfer.send(
        conn,
        planner,
        clobber=not no_clobber,
        compare=compare,
        filters=filters,
        dry_run=dry_run,
        delete=delete,
        quiet=quiet,
        as_json=as_json,
        timeout=timeout,
        bwlimit=bwlimit,
    )


def _one_daemon_only(dry_run: bool, delete: bool) -> None:
    if dry_run or delete:
        raise click.UsageError(f"{'--dry-run' if dry_run else '--delete'} works with one daemon at a time")


@main.command(short_help="Fetch files or prefixes from the daemon.")
@click.argument("names", nargs=-1, required=True)
@endpoint_option
@click.option(
    "-o",
    "--output",
    "out",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, allow_dash=True),
    help="Directory to write into; - writes the one file named to stdout, as zfile cat (./- for a directory named -).",
)
@compare_options
@filter_options
@dry_run_option
@delete_option("locally")
@bwlimit_option
@quiet_option
@json_option
@timeout_option
def get(
    names: tuple[str, ...],
    conn: Connection,
    out: str,
    checksum: bool,
    ignore_times: bool,
    filters: Filter,
    dry_run: bool,
    delete: bool,
    bwlimit: int | None,
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

    --exclude, --include and --exclude-from match paths relative to each
    prefix named, as send's do.  -n shows what would be fetched, left
    unchanged and deleted, and changes nothing.  --delete removes, under
    each prefix's local directory, the regular files the daemon no longer
    holds (never excluded ones, links, or anything outside OUT), then the
    directories that emptied; only after every file was fetched.  --bwlimit
    paces the bytes fetched (K = 1024).

    \b
    Examples:
      zfile get photos/ --from node7 -o ./back       # writes ./back/photos/...
      zfile get logs/ --from @nodes.txt -o ./collected   # ./collected/<node>/logs/...
      zfile get photos/ --from node7 -o ./back --delete --exclude '*.raw'
    """
    if out == "-":  # as curl's and wget's: stdout, for one file
        extra = checksum or ignore_times or bool(filters) or dry_run or delete or bwlimit is not None or as_json
        if len(names) != 1 or names[0].endswith("/") or conn.nodes or extra:
            raise click.UsageError(
                "-o - (stdout) takes one stored file from one daemon, without -c, -I, filters, -n, --delete, "
                "--bwlimit or --json, as zfile cat does"
            )
        write_stdout(conn, names[0], timeout, "get -o -")
        return
    compare = compare_mode(checksum, ignore_times)
    if conn.nodes:
        _one_daemon_only(dry_run, delete)
        bar = functools.partial(progress_bar, quiet=quiet or as_json)
        configs = conn.node_configs(timeout, bwlimit)
        fanout.get(configs, names, Path(out), compare=compare, filters=filters, quiet=quiet, as_json=as_json, bar=bar)
        return
    transfer.get(
        conn,
        names,
        Path(out),
        compare=compare,
        filters=filters,
        dry_run=dry_run,
        delete=delete,
        quiet=quiet,
        as_json=as_json,
        timeout=timeout,
        bwlimit=bwlimit,
    )


@main.command(name="ls", short_help="List stored files.")
@click.argument("prefix", default="")
@endpoint_option
@click.option("-R", "--recursive", is_flag=True, help="Every file whose name starts with PREFIX, at any depth.")
@click.option("--json", "as_json", is_flag=True, help='A JSON array: files, and directories as "type": "dir".')
@click.option(
    "--human/--bytes",
    default=None,
    help="Sizes as ls -h shows them (1.5K, 20M; K = 1024), or exact bytes [default: --human on a terminal].",
)
@timeout_option
def ls(prefix: str, conn: Connection, recursive: bool, as_json: bool, human: bool | None, timeout: float) -> None:
    """List stored files as ls does: the files directly under PREFIX and each
    subdirectory once, with a trailing / (its size blank, its newest mtime,
    the number of files below it).  PREFIX datasets and datasets/ both list
    inside datasets/.  -R lists every file whose name starts with PREFIX, at
    any depth; a PREFIX under which nothing is stored is an error (exit 1),
    as for ls.  Columns: size, mtime, the digest's first 12 hex digits, name.
    --json follows the same depth (as rclone lsjson does): one object per
    file ("type": "file", the fields of stat --json) or directory ("type":
    "dir", files, size, mtime); no header, one array.

    \b
    Examples:
      zfile ls --from node7
      zfile ls photos/2025 --from node7 --bytes
      zfile ls -R --json --from node7 | jq -r '.[].name'
    """
    if conn.nodes:
        raise click.UsageError("ls lists one daemon at a time")
    if human is None:
        human = sys.stdout.isatty()

    async def go() -> None:
        first = True
        async with conn.client(timeout) as client:
            items = client.list(listing.list_prefix(prefix, recursive))
            async for item in items if recursive else listing.one_level(items, prefix):
                if as_json:
                    click.echo(("[\n" if first else ",\n") + json.dumps(listing.ls_json(item)), nl=False)
                else:
                    click.echo(listing.ls_line(item, human))
                first = False
        if first and prefix.strip("/"):
            # As ls(1) fails on a path that is not there; an empty store lists as nothing.
            raise RemoteError(listing.nothing_at(prefix, recursive), code=ErrorCode.NOT_FOUND)
        if as_json:
            click.echo("\n]" if not first else "[]")

    run(go)
