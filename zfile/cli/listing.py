"""``zfile ls``'s view of a flat listing: one level, as ls(1) shows a
directory, or every file (``-R``), and the lines and JSON objects it prints;
and an entry's lines as ``zfile stat`` prints them.

The protocol's LIST is a flat prefix listing sorted by name (docs/protocol.md,
"LIST-PAGE"), so the directories of one level are made here: the names
under ``PREFIX/`` that hold another ``/`` are folded into one
:class:`Directory` per first component.  A sorted listing keeps every name
starting with ``d/`` together, so each directory is complete, and printed,
as soon as the first name past it arrives: memory stays that of one entry
whatever the tree's size, though every name below PREFIX is still read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from zfile.client.plan import shown
from zfile.protocol.entries import entry_json
from zfile.protocol.events import Entry
from zfile.protocol.names import quote_name


@dataclass(slots=True)
class Directory:
    """A directory of a one-level listing: ``name`` the stored path with a
    trailing ``/``; ``files`` and ``size`` (bytes) count every file below it
    at any depth; ``mtime_ns`` is the newest of their mtimes."""

    name: str
    files: int = 0
    size: int = 0
    mtime_ns: int = 0

    def add(self, entry: Entry) -> None:
        self.files += 1
        self.size += entry.size
        self.mtime_ns = max(self.mtime_ns, entry.mtime_ns)


def list_prefix(prefix: str, recursive: bool) -> str:
    """The LIST prefix that serves ``ls PREFIX``: ``PREFIX`` as given with
    ``-R`` (a flat string match, as always), else ``PREFIX`` without its
    trailing ``/`` so that a file named ``PREFIX`` is found too."""
    return prefix if recursive else prefix.rstrip("/") if prefix.strip("/") else ""


async def one_level(entries: AsyncIterator[Entry], prefix: str) -> AsyncIterator[Entry | Directory]:
    """The entries of ``entries`` (sorted by name, from ``list_prefix(prefix,
    False)``) as ``ls PREFIX`` shows them: the file named ``PREFIX`` itself,
    the files directly under ``PREFIX/``, and one :class:`Directory` for each
    subdirectory, in name order.  ``datasets`` and ``datasets/`` both mean the
    directory ``datasets/``; names that merely start with ``datasets``
    (``datasets2``) are not in it.  ``""`` or ``/`` is the top level."""
    bare = prefix.strip("/") and prefix.rstrip("/")
    base = f"{bare}/" if bare else ""
    current: Directory | None = None
    async for entry in entries:
        if entry.name == bare:
            yield entry
            continue
        if not entry.name.startswith(base):
            continue  # "datasets2" under the LIST prefix "datasets"
        rest = entry.name[len(base) :]
        head, slash, _ = rest.partition("/")
        if not slash:
            if current is not None:
                yield current
                current = None
            yield entry
            continue
        name = f"{base}{head}/"
        if current is not None and current.name != name:
            yield current
            current = None
        if current is None:
            current = Directory(name)
        current.add(entry)
    if current is not None:
        yield current


def nothing_at(prefix: str, recursive: bool) -> str:
    """The sentence of ``ls PREFIX`` (``-R`` when ``recursive``) that found nothing."""
    if recursive:
        return f"no stored name starts with {quote_name(prefix)}"
    return f"{quote_name(prefix.rstrip('/'))} is not in the store, nor is anything under it"


def human_size(size: int) -> str:
    """``size`` bytes as ``ls -h`` shows it: powers of 1024 with K, M, G, T, P
    and one decimal below 10 (``1.5K``, ``20M``), plain bytes below 1024."""
    value = float(size)
    for unit in ("", "K", "M", "G", "T", "P"):
        if value < 1024 or unit == "P":
            if not unit:
                return str(size)
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def ls_line(item: Entry | Directory, human: bool = False) -> str:
    """One line of ``ls``: size (bytes, or with ``human`` as ``ls -h``),
    mtime (local time), the digest's first 12 hex digits, name.  A directory
    has a blank size, its newest mtime, its file count in the digest's
    place and its name with a trailing ``/``.  The name is escaped
    (:func:`shown`): it is the daemon's input, and a control character in
    it (U+009B is CSI) would be obeyed by the terminal."""
    when = datetime.fromtimestamp(item.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")
    width = 6 if human else 14
    if isinstance(item, Directory):
        count = f"{item.files} file" if item.files == 1 else f"{item.files} files"
        return f"{'':>{width}}  {when}  {count:<12}  {shown(item.name)}"
    size = human_size(item.size) if human else f"{item.size:,}"
    return f"{size:>{width}}  {when}  {item.digest.hex()[:12]}  {shown(item.name)}"


def ls_json(item: Entry | Directory) -> dict[str, Any]:
    """The JSON object of one ``ls --json`` item: a file's is
    :func:`entry_json` with ``"type": "file"``; a directory's is ``name``
    (with its trailing ``/``), ``"type": "dir"``, ``files`` and ``size``
    (bytes) below it, and the newest ``mtime``/``mtime_ns`` among them."""
    if isinstance(item, Directory):
        return {
            "name": item.name,
            "type": "dir",
            "files": item.files,
            "size": item.size,
            "mtime": datetime.fromtimestamp(item.mtime_ns / 1e9, UTC).isoformat(),
            "mtime_ns": item.mtime_ns,
        }
    return {**entry_json(item), "type": "file"}


def iso_ns(ns: int) -> str:
    """``ns`` nanoseconds since the epoch as ISO 8601 in UTC, to the nanosecond."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def stat_lines(entry: Entry) -> list[str]:
    """``entry`` as ``zfile stat`` prints it, one field a line."""
    received = datetime.fromtimestamp(entry.received, UTC).isoformat(timespec="milliseconds")
    return [
        f"  name: {shown(entry.name)}",
        f"  size: {entry.size} bytes",
        f" mtime: {iso_ns(entry.mtime_ns)} ({entry.mtime_ns} ns)",
        f"  mode: {entry.mode:04o}",
        f"digest: {entry.algo} {entry.digest.hex()}",
        f"  recv: {received.replace('+00:00', 'Z')}",
        f"  peer: {shown(entry.peer) or '-'}",
    ]


__all__ = [
    "Directory",
    "human_size",
    "iso_ns",
    "list_prefix",
    "ls_json",
    "ls_line",
    "nothing_at",
    "one_level",
    "stat_lines",
]
