"""The CLI's one error boundary: every failure ends as one line on stderr,
``zfile: error: <sentence>``, and an exit code; no traceback reaches a user.

Exit codes: 0 done; 1 a transfer failed, or the daemon could not be reached;
2 usage: a bad flag or argument (click's own errors too), a bad endpoint, an
invalid configuration or key file, two paths that would be stored as one;
130 interrupted (Ctrl-C: the shell's 128 + SIGINT); 141, silently, when
the reader of the output left early (``| head``: the shell's 128 + SIGPIPE,
what it reports for ls or cat that SIGPIPE ended).  An output that cannot
be written (``> file`` on a full disk, ``> /dev/full``) is exit 1 with
``zfile: error: cannot write the output: <reason>``, as cat(1) reports a
write error (:func:`guard_output`).  :class:`Group` applies this to every
command, so commands raise zfile errors and never catch them to print.
"""

from __future__ import annotations

import io
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


class OutputError(ZfileError):
    """Standard output could not be written (other than a reader gone early)."""


class _Stdout(io.RawIOBase):
    """File descriptor 1, its write errors made :class:`OutputError`: the
    system's error says only what went wrong ("No space left on device"),
    not that the output is what it went wrong with.  A closed pipe stays
    BrokenPipeError (exit 141)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: Any) -> int:
        # All of it: unbuffered (python -u), callers such as cat's get this raw
        # stream itself, and a short write(2) (a signal mid-pipe) would lose bytes.
        view = memoryview(data).cast("B")
        size = view.nbytes
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write the output: {exc.strerror or exc}") from exc
        return size


def guard_output() -> None:
    """Put :data:`sys.stdout` (and its ``buffer``, which binary output such
    as ``zfile cat`` writes) over :class:`_Stdout`, with the same encoding
    and buffering; a stdout without a descriptor (a test's capture) is left
    as it is."""
    old = sys.stdout
    try:
        fd = old.fileno()
    except (AttributeError, OSError, ValueError):
        return
    raw = _Stdout(fd)
    # Unbuffered (python -u) stdout writes through to the descriptor: keep it so.
    buffered = io.BufferedWriter(raw) if isinstance(old.buffer, io.BufferedWriter) else raw
    sys.stdout = io.TextIOWrapper(
        buffered,  # type: ignore[arg-type]
        encoding=old.encoding,
        errors=old.errors,
        line_buffering=old.line_buffering,
        write_through=old.write_through,
    )


def _discard_output() -> None:
    # What stdout still buffers goes nowhere, so that the interpreter's last
    # flush at exit neither fails again nor prints "Exception ignored".
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class Group(click.Group):
    """A click group whose commands' errors all pass through :func:`fail`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # Python ignores SIGPIPE, so a write raised; keep the exit's flush quiet too.
            # (Caught here, as click's main would make it exit 1.)
            _discard_output()
            sys.exit(EXIT_BROKEN_PIPE)
        except OutputError as exc:
            _discard_output()
            fail(str(exc))

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
    "OutputError",
    "exit_code",
    "fail",
    "guard_output",
    "on_interrupt",
]
