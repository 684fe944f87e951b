"""The events that read and change the catalog without moving file bytes:
LIST, REMOVE, MOVE, STAT and CHECK with their answers and the
:class:`Entry` they carry, and PING.

:mod:`zfile.protocol.events` is the protocol's whole set, with the units
every event uses; docs/protocol.md is the reference.  This module imports
no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from zfile.protocol.transfer_events import FileResult


@dataclass(frozen=True, slots=True)
class Entry:
    """One catalog entry, as ``ls`` shows it.

    ``received`` is when the store committed it, in seconds since the epoch;
    ``peer`` who sent it (their key or address, "" when unknown).
    """

    name: str
    size: int
    mtime_ns: int
    mode: int
    algo: str
    digest: bytes
    received: float
    id: str = ""
    peer: str = ""


@dataclass(frozen=True, slots=True)
class ListRequest:
    """Client asks for up to ``limit`` entries whose names start with
    ``prefix`` and sort after ``after`` (paging cursor; "" for the first page)."""

    TYPE: ClassVar[str] = "LIST"
    id: int
    prefix: str = ""
    after: str = ""
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of catalog entries, sorted by name; ``more`` says whether
    the client may ask for the next page (with ``after`` = last name)."""

    TYPE: ClassVar[str] = "LIST-PAGE"
    id: int
    entries: tuple[Entry, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class Remove:
    """Client asks to remove stored files (client -> server).

    Either ``names``, the files to remove (1 to 1,024), or ``prefix``, a
    tree: the server then removes up to ``limit`` of the entries whose names
    start with ``prefix`` and sort after ``after`` (a paging cursor, as in
    :class:`ListRequest`).  Exactly one of ``names`` and ``prefix`` is given.
    """

    TYPE: ClassVar[str] = "REMOVE"
    id: int
    names: tuple[str, ...] = ()
    prefix: str = ""
    after: str = ""
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class RemoveOk:
    """Server's answer to a :class:`Remove` (server -> client): ``names``
    the files it tried (those of the request, in order, or the entries found
    under the prefix), ``results`` what became of each (``digest`` that of
    the removed file), ``more`` whether entries under the prefix remain
    after the last name (ask again with ``after`` = that name)."""

    TYPE: ClassVar[str] = "REMOVE-OK"
    id: int
    names: tuple[str, ...]
    results: tuple[FileResult, ...]
    more: bool = False


@dataclass(frozen=True, slots=True)
class Move:
    """Client asks to rename the stored file ``name`` to ``to`` (client ->
    server); ``clobber=False`` asks for an ``exists`` error rather than
    replacing a stored file named ``to``."""

    TYPE: ClassVar[str] = "MOVE"
    id: int
    name: str
    to: str
    clobber: bool = False


@dataclass(frozen=True, slots=True)
class MoveOk:
    """Server renamed the file (server -> client): ``entry`` is its entry
    under the new name (size, mtime, digest, received and peer unchanged)."""

    TYPE: ClassVar[str] = "MOVE-OK"
    id: int
    entry: Entry


@dataclass(frozen=True, slots=True)
class Stat:
    """Client asks for the catalog entry of ``name`` (client -> server)."""

    TYPE: ClassVar[str] = "STAT"
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class StatOk:
    """The entry of the file a :class:`Stat` named (server -> client)."""

    TYPE: ClassVar[str] = "STAT-OK"
    id: int
    entry: Entry


@dataclass(frozen=True, slots=True)
class Ping:
    """Client asks how the daemon is (client -> server)."""

    TYPE: ClassVar[str] = "PING"
    id: int


@dataclass(frozen=True, slots=True)
class Pong:
    """The daemon's state (server -> client): ``version`` of zfile,
    ``protocol`` version, ``uptime`` in seconds, ``free`` bytes left for
    new files (None when the store has no such limit: an object store),
    ``transfers`` running, ``curve`` whether connections are CurveZMQ,
    ``read_only`` whether it refuses every change."""

    TYPE: ClassVar[str] = "PONG"
    id: int
    version: str
    protocol: int
    uptime: float
    transfers: int
    curve: bool
    free: int | None = None
    #: The daemon refuses every change (``zfile serve --read-only``).
    read_only: bool = False


#: The verdicts of a CHECK-OK, one byte per file asked about.
#: No stored file of that name and size.
CHECK_ABSENT = 0
#: A stored file of that name and size (and that mtime, when asked).
CHECK_SAME = 1
#: A stored file of that name and size whose mtime is another.
CHECK_DIFFERS = 2


@dataclass(frozen=True, slots=True)
class Check:
    """Client asks which of its files the daemon already holds (client ->
    server): rsync's quick check answered by the daemon from its catalog,
    so that a tree sent again costs one request of names, sizes and mtimes
    and an answer of a byte and a digest per file, not a listing.

    ``names``, ``sizes`` (bytes) and, when given, ``mtimes_ns``
    (nanoseconds since the epoch) are parallel: item ``i`` of each
    describes one file.  Without ``mtimes_ns`` only sizes are compared (for
    ``-c``, which then compares the digests the answer carries).  ``algo``
    names the digest algorithm the answer's digests are wanted in.
    """

    TYPE: ClassVar[str] = "CHECK"
    id: int
    algo: str
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    mtimes_ns: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class CheckOk:
    """The daemon's verdict on each file of a :class:`Check` (server ->
    client): ``same`` holds one byte per name, in the request's order,
    :data:`CHECK_ABSENT`, :data:`CHECK_SAME` or :data:`CHECK_DIFFERS`;
    ``digests`` one per :data:`CHECK_SAME` verdict, in order, the stored
    file's digest in the request's algo, or ``b""`` when it is stored under
    another algorithm."""

    TYPE: ClassVar[str] = "CHECK-OK"
    id: int
    same: bytes
    digests: tuple[bytes, ...] = ()


__all__ = [
    "CHECK_ABSENT",
    "CHECK_DIFFERS",
    "CHECK_SAME",
    "Check",
    "CheckOk",
    "Entry",
    "ListPage",
    "ListRequest",
    "Move",
    "MoveOk",
    "Ping",
    "Pong",
    "Remove",
    "RemoveOk",
    "Stat",
    "StatOk",
]
