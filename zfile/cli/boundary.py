"""The CLI's one error boundary: every failure ends as one line on stderr,
``zfile: error: <sentence>``, and an exit code; no traceback reaches a user.

Exit codes: 0 done; 1 a transfer failed, or the daemon could not be reached;
2 usage: a bad flag or argument (click's own errors too), a bad endpoint, an
invalid configuration or key file, two paths that would be stored as one;
130 interrupted (Ctrl-C: the shell's 128 + SIGINT); 141, silently, when
the reader of the output left early (``| head``: the shell's 128 + SIGPIPE,
what it reports for ls or cat that SIGPIPE ended).  :class:`Group` applies
this to every command, so commands raise zfile errors and never catch them
to print.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from zfile.errors import ConfigError, EndpointError, NameCollision, ZfileError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

# What the running command has to say when interrupted; see on_interrupt.
_interrupt_note: Callable[[], str] | None = None


def on_interrupt(note: Callable[[], str]) -> None:
    """Have an interrupt (Ctrl-C) print ``zfile: interrupted: <note()>``:
    the command's word on what was done and how to go on."""
    global _interrupt_note
    _interrupt_note = note


def exit_code(exc: ZfileError) -> int:
    """The exit code for a zfile error: 2 for configuration and endpoint
    errors and for paths that collide (the command line or config file is at
    fault), else 1."""
    return EXIT_USAGE if isinstance(exc, ConfigError | EndpointError | NameCollision) else EXIT_FAILED


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``zfile: error: <message>`` on stderr and exit with ``code``."""
    click.echo(f"zfile: error: {message}", err=True)
    sys.exit(code)


class Group(click.Group):
    """A click group whose commands' errors all pass through :func:`fail`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # Python ignores SIGPIPE, so a write raised; keep the exit's flush quiet too.
            # (Caught here, as click's main would make it exit 1.)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_BROKEN_PIPE)

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "zfile"
            fail(f"{exc.format_message()} (see '{where} --help')", EXIT_USAGE)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            note = _interrupt_note() if _interrupt_note is not None else ""
            click.echo("zfile: interrupted" + (f": {note}" if note else ""), err=True)
            sys.exit(EXIT_INTERRUPTED)
        except ZfileError as exc:
            fail(str(exc), exit_code(exc))
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Group",
    "exit_code",
    "fail",
    "on_interrupt",
]
