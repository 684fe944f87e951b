"""``zfile rm``: file operations on stored files, thin over
:mod:`zfile.client.ops`.

Errors that end the command are not caught here (:mod:`zfile.cli.boundary`);
what befalls one name of several is said on its own line, ``zfile: error:
'NAME': <sentence>``, the others go on, and the exit code is then 1.
"""

from __future__ import annotations

import sys

import click

from zfile.cli.boundary import EXIT_FAILED
from zfile.cli.common import Connection, endpoint_option, run, timeout_option
from zfile.client.ops import Removal
from zfile.client.tree import shown
from zfile.errors import ErrorCode, RemoteError


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
    Without -r, a NAME ending in / is refused (as rm refuses a directory);
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


__all__ = ["rm"]
