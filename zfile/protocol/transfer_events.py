"""The events that move files: uploads (PUT, PUT-MANY, PUT-STREAM and their
CHUNK, CREDIT and PUT-END), downloads (GET, GET-META, GET-MANY) and chain
fan-out's CHAIN-RESULT.

:mod:`zfile.protocol.events` is the protocol's whole set, with the units
every event uses; docs/protocol.md is the reference.  This module imports
no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

#: Bytes-like payload of a data frame: ``bytes`` or a ``memoryview`` of a
#: received frame (kept zero-copy; never mutate a buffer handed to a send).
Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Put:
    """Client asks to upload ``name`` (client -> server).

    ``size`` is the file's length in bytes, ``mtime_ns`` its modification time
    (ns since the epoch), ``mode`` its permission bits (``st_mode & 0o7777``),
    ``algo`` the whole-file digest algorithm.  ``clobber=False`` asks for an
    ``exists`` error rather than replacing a stored file of the same name.

    A file of at most one chunk may travel inline: ``data`` then holds all of
    it and ``digest`` its whole-file digest; the server answers :class:`PutOk`
    directly.
    """

    TYPE: ClassVar[str] = "PUT"
    id: int
    name: str
    size: int
    mtime_ns: int
    mode: int
    algo: str
    clobber: bool = True
    data: Buffer | None = field(default=None, repr=False)
    digest: bytes | None = None
    #: Chain fan-out (docs/protocol.md, "Chain fan-out"): the endpoints this
    #: daemon forwards the file to, the next hop first; empty: store only.
    chain: tuple[str, ...] = ()
    #: Who started the chain (the first hop's view of the client: its CURVE
    #: key or address), recorded as every node's ``peer``; "" from a client.
    origin: str = ""

    @property
    def inline(self) -> bool:
        return self.data is not None


@dataclass(frozen=True, slots=True)
class PutFile:
    """One whole file of a :class:`PutMany`: the fields of an inline
    :class:`Put` (same units) without ``id`` and ``algo``, which the batch
    gives once."""

    name: str
    size: int
    mtime_ns: int
    mode: int
    digest: bytes
    clobber: bool = True
    data: Buffer = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class PutMany:
    """Client uploads several small files in one message (client -> server).

    Each of ``files`` is stored, or refused, on its own, as if it had come in
    an inline :class:`Put`; the server answers with one :class:`PutManyOk`
    holding a result per file, in the same order.  One message and one reply
    for many files: for small files the cost per message, not per byte, is
    what limits a transfer.
    """

    TYPE: ClassVar[str] = "PUT-MANY"
    id: int
    algo: str
    files: tuple[PutFile, ...]

    @property
    def size(self) -> int:
        """Bytes of file data the message carries, all files together."""
        return sum(f.size for f in self.files)


@dataclass(frozen=True, slots=True)
class FileResult:
    """What became of one file of a :class:`PutMany`: ``code`` is "" and
    ``digest`` the stored file's digest when it was committed, else an
    errors.ErrorCode value and a sentence for a person."""

    code: str = ""
    message: str = ""
    digest: bytes | None = None

    @property
    def ok(self) -> bool:
        return not self.code


@dataclass(frozen=True, slots=True)
class PutManyOk:
    """Server's answer to a :class:`PutMany`: one result per file, in the
    order of the request's files (server -> client)."""

    TYPE: ClassVar[str] = "PUT-MANY-OK"
    id: int
    results: tuple[FileResult, ...]


@dataclass(frozen=True, slots=True)
class PutReady:
    """Server accepts an upload (server -> client).

    ``transfer`` is the server's stable name for this upload (the same when it
    resumes), ``offset`` the byte offset the client must continue from (0 for a
    fresh upload, more when resuming a partial), ``credit`` the bytes the
    client may send before waiting for :class:`Credit`.
    """

    TYPE: ClassVar[str] = "PUT-READY"
    id: int
    transfer: str
    offset: int
    credit: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """``data`` holds the file's bytes from ``offset`` (either direction)."""

    TYPE: ClassVar[str] = "CHUNK"
    id: int
    offset: int
    data: Buffer = field(repr=False)


@dataclass(frozen=True, slots=True)
class Credit:
    """The receiver of a stream grants ``credit`` more bytes (either direction).

    Credit is cumulative, FileMQ's NOM (RFC 35): the sender may have at most
    the sum of all grants minus the bytes it has sent outstanding.
    """

    TYPE: ClassVar[str] = "CREDIT"
    id: int
    credit: int


@dataclass(frozen=True, slots=True)
class PutEnd:
    """Client has sent every byte; ``digest`` is the whole-file digest,
    ``size`` the bytes sent: required after a :class:`PutStream`, whose size
    is known only now; after a PUT absent or equal to its size."""

    TYPE: ClassVar[str] = "PUT-END"
    id: int
    digest: bytes
    size: int | None = None


@dataclass(frozen=True, slots=True)
class PutOk:
    """Server committed the upload under its final name (server -> client)."""

    TYPE: ClassVar[str] = "PUT-OK"
    id: int
    size: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class Get:
    """Client asks to download ``name`` (client -> server).

    ``offset`` > 0 resumes a partial download whose source had digest
    ``digest``; the server honours it only while the stored file still has
    that digest.  ``credit`` is the client's first grant, in bytes.
    """

    TYPE: ClassVar[str] = "GET"
    id: int
    name: str
    credit: int
    offset: int = 0
    digest: bytes | None = None


@dataclass(frozen=True, slots=True)
class GetMeta:
    """Server describes the file it is about to stream (server -> client).

    Chunks follow from ``offset`` (0, or the resume offset the client asked
    for when the file is unchanged) up to ``size``.  A file is complete when
    ``size`` bytes have arrived; there is no end message.
    """

    TYPE: ClassVar[str] = "GET-META"
    id: int
    name: str
    size: int
    mtime_ns: int
    mode: int
    algo: str
    digest: bytes
    offset: int


@dataclass(frozen=True, slots=True)
class PutStream:
    """Client asks to upload ``name`` whose size it will know only at the
    end, as from a pipe (client -> server): a :class:`Put` without ``size``
    (same other fields and units).  The server answers :class:`PutReady`
    with offset 0 (there is no resume), CHUNKs follow under credit and the
    :class:`PutEnd` gives the size."""

    TYPE: ClassVar[str] = "PUT-STREAM"
    id: int
    name: str
    mtime_ns: int
    mode: int
    algo: str
    clobber: bool = True


@dataclass(frozen=True, slots=True)
class GetMany:
    """Client asks for several small files in one message (client -> server).

    ``names`` are names in the store, 1 to ``MAX_MANY_FILES`` of them;
    ``most`` is how many bytes of file data the reply may carry in all (at
    most ``MAX_MANY_BYTES``).  The server answers with one
    :class:`GetManyOk` holding each file whole, or why it is refused, in the
    order of ``names``: a PUT-MANY the other way round.
    """

    TYPE: ClassVar[str] = "GET-MANY"

    id: int
    names: tuple[str, ...]
    most: int = 4 << 20


@dataclass(frozen=True, slots=True)
class GotFile:
    """One file of a :class:`GetManyOk`.  ``code`` is "" for a file that
    came whole: ``size`` bytes (its ``data``), ``mtime_ns`` (ns since the
    epoch), ``mode``, and ``algo`` and ``digest`` of the whole file as the
    store recorded them.  Else ``code`` is an errors.ErrorCode value,
    ``message`` a sentence for a person, and ``data`` is empty: ``too-large``
    when the file did not fit in the reply's ``most`` bytes (get it on its
    own), ``not-found``, ``bad-request`` for a bad name, ``internal``..."""

    code: str = ""
    message: str = ""
    size: int = 0
    mtime_ns: int = 0
    mode: int = 0
    algo: str = ""
    digest: bytes | None = None
    data: Buffer = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return not self.code


@dataclass(frozen=True, slots=True)
class GetManyOk:
    """Server's answer to a :class:`GetMany`: one :class:`GotFile` per
    name asked for, in the same order (server -> client); each file's data
    travels in a frame of its own."""

    TYPE: ClassVar[str] = "GET-MANY-OK"

    id: int
    files: tuple[GotFile, ...]

    @property
    def size(self) -> int:
        """Bytes of file data the message carries, all files together."""
        return sum(f.size for f in self.files if f.ok)


@dataclass(frozen=True, slots=True)
class ChainResult:
    """What became of one node further down a chain upload (server -> client).

    A forwarding daemon sends one per node after it, relaying what its own
    successor sent, before its own PUT-OK or ERROR: ``endpoint`` is the
    node's endpoint as the chain named it, ``code`` "" and ``digest`` the
    committed file's digest when the node committed, else an
    errors.ErrorCode value and a sentence for a person.
    """

    TYPE: ClassVar[str] = "CHAIN-RESULT"
    id: int
    endpoint: str
    code: str = ""
    message: str = ""
    digest: bytes | None = None

    @property
    def ok(self) -> bool:
        return not self.code


__all__ = [
    "Buffer",
    "ChainResult",
    "Chunk",
    "Credit",
    "FileResult",
    "Get",
    "GetMany",
    "GetManyOk",
    "GetMeta",
    "GotFile",
    "Put",
    "PutEnd",
    "PutFile",
    "PutMany",
    "PutManyOk",
    "PutOk",
    "PutReady",
    "PutStream",
]
