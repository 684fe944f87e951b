"""Logging set-up for the daemon: to stderr, where journald picks it up.

``text`` is one human-readable line per record.  ``json`` is one JSON object
per line for log shippers, written by python-json-logger; fields passed with
``extra=`` (the transfer line's peer, direction, file, bytes, seconds,
mb_per_s, digest, result) become keys of their own.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send the root logger's records at ``level`` and above to stderr as
    ``fmt`` ("text" or "json"), replacing any handlers it had."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
