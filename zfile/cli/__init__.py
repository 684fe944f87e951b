"""``zfile`` command line: thin click commands over the library."""

from zfile.cli.commands import main

__all__ = ["main"]
