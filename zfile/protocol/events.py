"""Protocol events: one frozen dataclass per message type.

An event is what one multipart ZeroMQ message says.  Frame 0 of every message
is a msgpack map holding the protocol version, the type name and the event's
fields; :class:`Chunk`, and a :class:`Put` that carries its file inline, add a
second frame of raw file bytes; a :class:`PutMany` and a :class:`GetManyOk`
add one frame per file.
docs/protocol.md is the reference; units are: sizes, offsets and credit in
bytes (offsets from the start of the file), times in nanoseconds since the
Unix epoch (``mtime_ns``) or seconds (``received``).

The events live in :mod:`zfile.protocol.transfer_events` (files moving)
and :mod:`zfile.protocol.op_events` (the catalog read and changed); this
module holds the two every transfer may end with (:class:`Cancel`,
:class:`Error`), the union :data:`Event` and the table of types.  It
imports no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from zfile.protocol.op_events import (
    CHECK_ABSENT,
    CHECK_DIFFERS,
    CHECK_SAME,
    Check,
    CheckOk,
    Entry,
    ListPage,
    ListRequest,
    Move,
    MoveOk,
    Ping,
    Pong,
    Remove,
    RemoveOk,
    Stat,
    StatOk,
)
from zfile.protocol.transfer_events import (
    Buffer,
    ChainResult,
    Chunk,
    Credit,
    FileResult,
    Get,
    GetMany,
    GetManyOk,
    GetMeta,
    GotFile,
    Put,
    PutEnd,
    PutFile,
    PutMany,
    PutManyOk,
    PutOk,
    PutReady,
    PutStream,
)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Client abandons transfer ``id``; the server keeps an upload's partial
    so it can be resumed."""

    TYPE: ClassVar[str] = "CANCEL"
    id: int


@dataclass(frozen=True, slots=True)
class Error:
    """Server ends transfer ``id`` with an error code (errors.ErrorCode value)
    and a sentence for a person.  ``id`` is -1 when the offending message's
    id could not be read."""

    TYPE: ClassVar[str] = "ERROR"
    id: int
    code: str
    message: str


Event = (
    Put
    | PutMany
    | PutManyOk
    | PutReady
    | Chunk
    | Credit
    | PutEnd
    | PutOk
    | Get
    | GetMeta
    | ListRequest
    | ListPage
    | Cancel
    | Error
    | Remove
    | RemoveOk
    | Move
    | MoveOk
    | Stat
    | StatOk
    | Ping
    | Pong
    | PutStream
    | ChainResult
    | GetMany
    | GetManyOk
    | Check
    | CheckOk
)

EVENT_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (
        Put,
        PutMany,
        PutManyOk,
        PutReady,
        Chunk,
        Credit,
        PutEnd,
        PutOk,
        Get,
        GetMeta,
        ListRequest,
        ListPage,
        Cancel,
        Error,
        Remove,
        RemoveOk,
        Move,
        MoveOk,
        Stat,
        StatOk,
        Ping,
        Pong,
        PutStream,
        GetMany,
        GetManyOk,
        ChainResult,
        Check,
        CheckOk,
    )
}

__all__ = [
    "CHECK_ABSENT",
    "CHECK_DIFFERS",
    "CHECK_SAME",
    "Buffer",
    "Cancel",
    "ChainResult",
    "Check",
    "CheckOk",
    "Chunk",
    "Credit",
    "EVENT_TYPES",
    "Entry",
    "Error",
    "Event",
    "FileResult",
    "Get",
    "GetMany",
    "GetManyOk",
    "GetMeta",
    "GotFile",
    "ListPage",
    "ListRequest",
    "Move",
    "MoveOk",
    "Ping",
    "Pong",
    "Put",
    "PutEnd",
    "PutFile",
    "PutMany",
    "PutManyOk",
    "PutOk",
    "PutReady",
    "PutStream",
    "Remove",
    "RemoveOk",
    "Stat",
    "StatOk",
]
