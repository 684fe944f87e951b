"""The zfile protocol, sans I/O.

zfile speaks in multipart ZeroMQ messages between a DEALER client and a ROUTER
server (docs/protocol.md).  This module holds the whole protocol and no I/O:
it imports neither zmq, asyncio nor the file system, in the manner of h11.

- :mod:`zfile.events` defines the events (one frozen dataclass per message);
- :func:`encode` / :func:`decode` turn events into frames and back;
- :class:`Transfer` is the state machine of one transfer (an upload, a
  download or a listing), identified by the client-chosen ``id`` that every
  message carries.  Both ends run one: ``send()`` checks an event we emit
  (raising :class:`LocalProtocolError`), ``receive()`` one the peer emitted
  (raising :class:`RemoteProtocolError`).  It enforces message order, resume
  offsets, contiguous chunks, declared sizes and credit (FileMQ's NOM,
  RFC 35; ZeroMQ Guide chapter 7's credit-based flow control).
"""

from __future__ import annotations

from enum import Enum

from zfile.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from zfile.protocol.codec import (
    MAX_DIGEST_BYTES,
    MAX_FRAMES,
    MAX_INLINE_BYTES,
    MAX_MANY_BYTES,
    MAX_MANY_FILES,
    PROTOCOL_VERSION,
    decode,
    encode,
    max_frame_bytes,
    page_fit,
)
from zfile.protocol.credit import next_piece
from zfile.protocol.events import (
    CHECK_SAME,
    Buffer,
    Cancel,
    ChainResult,
    Check,
    CheckOk,
    Chunk,
    Credit,
    Entry,
    Error,
    Event,
    FileResult,
    Get,
    GetMany,
    GetManyOk,
    GetMeta,
    GotFile,
    ListPage,
    ListRequest,
    Move,
    MoveOk,
    Ping,
    Pong,
    Put,
    PutEnd,
    PutFile,
    PutMany,
    PutManyOk,
    PutOk,
    PutReady,
    PutStream,
    Remove,
    RemoveOk,
    Stat,
    StatOk,
)

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_DIGEST_BYTES",
    "MAX_MANY_BYTES",
    "MAX_MANY_FILES",
    "MAX_FRAMES",
    "MAX_INLINE_BYTES",
    "max_frame_bytes",
    "page_fit",
    "DEFAULT_CHUNK_SIZE",
    "OPERATIONS",
    "Action",
    "action_for",
    "message_kind",
    "Role",
    "State",
    "Transfer",
    "decode",
    "encode",
    "Cancel",
    "ChainResult",
    "Check",
    "CheckOk",
    "Chunk",
    "Credit",
    "Entry",
    "Error",
    "Event",
    "Get",
    "GetMeta",
    "ListPage",
    "ListRequest",
    "FileResult",
    "Put",
    "PutEnd",
    "PutFile",
    "PutMany",
    "PutManyOk",
    "PutOk",
    "PutReady",
    "PutStream",
    "Move",
    "MoveOk",
    "Ping",
    "Pong",
    "Remove",
    "RemoveOk",
    "Stat",
    "StatOk",
    "GetMany",
    "GetManyOk",
    "GotFile",
]

#: Default chunk size in bytes: large enough that zero-copy sends pay off
#: (pyzmq's COPY_THRESHOLD is 64 KiB) and per-message overhead is small.
DEFAULT_CHUNK_SIZE = 1 << 20


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


class State(Enum):
    IDLE = "idle"
    PUT_OPENING = "put-opening"  # PUT sent, waiting for PUT-READY
    PUT_SENDING = "put-sending"  # chunks flow client -> server under credit
    PUT_CLOSING = "put-closing"  # PUT-END, inline PUT or PUT-MANY sent, waiting for PUT-OK / PUT-MANY-OK
    GET_OPENING = "get-opening"  # GET sent, waiting for GET-META
    GET_RECEIVING = "get-receiving"  # chunks flow server -> client under credit
    LIST_WAITING = "list-waiting"  # LIST sent, waiting for LIST-PAGE
    LIST_PAGED = "list-paged"  # a page arrived and more may be asked for
    OP_WAITING = "op-waiting"  # a file operation (REMOVE, MOVE, STAT, PING) sent, waiting for its answer
    DONE = "done"
    FAILED = "failed"
    GET_MANY_WAITING = "get-many-waiting"  # GET-MANY sent, waiting for GET-MANY-OK


class Action(Enum):
    """What the receiving end does with an event :meth:`Transfer.receive`
    accepted, so the I/O layers need no dispatch of their own on event types."""

    OPEN = "open"  # a request that starts a transfer: admit it and start its work
    NEXT_PAGE = "next-page"  # the client asks for the next page of a listing
    DATA = "data"  # stream data (CHUNK, PUT-END): hand it to the transfer's consumer
    CREDIT = "credit"  # more credit: wake the transfer's sender
    IGNORE = "ignore"  # changes nothing (credit that reached a finished download)
    CANCEL = "cancel"  # the client abandoned the transfer
    REPLY = "reply"  # the server's answer the client is waiting for
    ERROR = "error"  # the server ended the transfer with an ERROR


C, S = Role.CLIENT, Role.SERVER

# The one table of state rules: (state, sender, message type) -> next state.
# Rules that also depend on counters (chunk offsets, credit, completion) are
# applied in Transfer._apply after this table allowed the message.
_TRANSITIONS: dict[tuple[State, Role, str], State] = {
    (State.IDLE, C, "PUT"): State.PUT_OPENING,
    (State.IDLE, C, "PUT-STREAM"): State.PUT_OPENING,
    (State.IDLE, C, "PUT+DATA"): State.PUT_CLOSING,
    (State.IDLE, C, "PUT-MANY"): State.PUT_CLOSING,
    (State.IDLE, C, "GET"): State.GET_OPENING,
    (State.IDLE, C, "LIST"): State.LIST_WAITING,
    (State.PUT_OPENING, S, "PUT-READY"): State.PUT_SENDING,
    (State.PUT_SENDING, C, "CHUNK"): State.PUT_SENDING,
    (State.PUT_SENDING, S, "CREDIT"): State.PUT_SENDING,
    (State.PUT_SENDING, C, "PUT-END"): State.PUT_CLOSING,
    (State.PUT_CLOSING, S, "CREDIT"): State.PUT_CLOSING,
    (State.PUT_CLOSING, S, "PUT-OK"): State.DONE,
    (State.PUT_CLOSING, S, "PUT-MANY-OK"): State.DONE,
    (State.GET_OPENING, S, "GET-META"): State.GET_RECEIVING,
    (State.GET_RECEIVING, S, "CHUNK"): State.GET_RECEIVING,
    (State.GET_RECEIVING, C, "CREDIT"): State.GET_RECEIVING,
    (State.LIST_WAITING, S, "LIST-PAGE"): State.LIST_PAGED,
    (State.LIST_PAGED, C, "LIST"): State.LIST_WAITING,
    (State.IDLE, C, "GET-MANY"): State.GET_MANY_WAITING,
    (State.GET_MANY_WAITING, S, "GET-MANY-OK"): State.DONE,
}
# File operations: one request, one answer.  (request, answer) pairs.
OPERATIONS: dict[str, str] = {
    "REMOVE": "REMOVE-OK",
    "MOVE": "MOVE-OK",
    "STAT": "STAT-OK",
    "PING": "PONG",
    "CHECK": "CHECK-OK",
}
# A PUT-STREAM's size until its PUT-END: no chunk can run past it.
_UNKNOWN_SIZE = (1 << 63) - 1

# answer -> the kind of transfer it answers
_ANSWERS = {answer: request.lower() for request, answer in OPERATIONS.items()}
for _request, _answer in OPERATIONS.items():
    _TRANSITIONS[(State.IDLE, C, _request)] = State.OP_WAITING
    _TRANSITIONS[(State.OP_WAITING, S, _answer)] = State.DONE
_OPEN_STATES = frozenset(s for s in State if s not in (State.IDLE, State.DONE, State.FAILED))
# From any open state the server may fail a transfer and the client abandon it.
for _state in _OPEN_STATES:
    _TRANSITIONS[(_state, S, "ERROR")] = State.FAILED
    _TRANSITIONS[(_state, C, "CANCEL")] = State.FAILED
# A forwarding daemon reports each node after it (chain fan-out) while the
# upload is open, before its own PUT-OK or ERROR.
for _state in (State.PUT_OPENING, State.PUT_SENDING, State.PUT_CLOSING):
    _TRANSITIONS[(_state, S, "CHAIN-RESULT")] = _state
# A download the server finished (DONE on its side) may still see credit the
# client granted before the last chunk arrived; it changes nothing.
_TRANSITIONS[(State.DONE, C, "CREDIT")] = State.DONE
# A server may refuse a request it cannot even start (busy, bad name).
_TRANSITIONS[(State.IDLE, S, "ERROR")] = State.FAILED


# What the receiver does with each kind of message (refined in Transfer._process).
_ACTIONS: dict[str, Action] = {
    **dict.fromkeys(("PUT", "PUT+DATA", "PUT-MANY", "GET", "LIST", "PUT-STREAM"), Action.OPEN),
    **dict.fromkeys(("CHUNK", "PUT-END"), Action.DATA),
    **dict.fromkeys(("PUT-READY", "PUT-OK", "PUT-MANY-OK", "GET-META", "LIST-PAGE", "CHAIN-RESULT"), Action.REPLY),
    "CREDIT": Action.CREDIT,
    "CANCEL": Action.CANCEL,
    "ERROR": Action.ERROR,
    **dict.fromkeys(OPERATIONS, Action.OPEN),
    **dict.fromkeys(OPERATIONS.values(), Action.REPLY),
    "GET-MANY": Action.OPEN,
    "GET-MANY-OK": Action.REPLY,
}


def message_kind(event: Event) -> str:
    """The message type as the state rules know it: the event's TYPE, or
    "PUT+DATA" for a PUT that carries its file inline."""
    if isinstance(event, Put) and event.inline:
        return "PUT+DATA"
    return event.TYPE


def action_for(event: Event) -> Action:
    """What a receiver does with ``event`` when no transfer of its id is
    open: OPEN for a request, CREDIT or CANCEL for a late message of a
    finished transfer (harmless), anything else is out of place."""
    return _ACTIONS[message_kind(event)]


class Transfer:
    """State machine of one transfer as seen from ``role``'s end.

    Attributes (all bytes): ``size`` the file's declared length, ``offset`` the
    next byte expected in the stream (equal to ``size`` once complete),
    ``credit`` how many more bytes the data sender may send now.  ``state`` is
    a :class:`State`.
    """

    def __init__(self, role: Role, id: int) -> None:
        self.role = role
        self.id = id
        self.state = State.IDLE
        self.size = 0
        self.offset = 0
        self.credit = 0
        self.resume_offset = 0
        self.resume_digest: bytes | None = None
        # "put", "put-many", "get", "list", "get-many" or a file operation ("remove"...), from the opening message
        self.kind = ""
        self.files = 0  # files in a PUT-MANY, names in a REMOVE, a GET-MANY or a CHECK
        self.limit = 0  # most entries a REMOVE of a prefix may answer for
        self.streamed = False  # a PUT-STREAM: the size is known only at PUT-END
        self.more = False

    def __repr__(self) -> str:
        return (
            f"Transfer({self.role.value}, id={self.id}, {self.state.value}, "
            f"offset={self.offset}/{self.size}, credit={self.credit})"
        )

    @property
    def finished(self) -> bool:
        return self.state in (State.DONE, State.FAILED)

    def send(self, event: Event) -> Action:
        """Check and apply an event this end is about to send; return what
        the peer will do with it.

        Raises :class:`LocalProtocolError` if the protocol forbids it now.
        """
        return self._process(self.role, event, LocalProtocolError)

    def receive(self, event: Event) -> Action:
        """Check and apply an event the peer sent; return what this end must
        do with it (:class:`Action`).

        Raises :class:`RemoteProtocolError` (code ``bad-request``) if the
        protocol forbids it now; the transfer is then FAILED.
        """
        peer = Role.SERVER if self.role is Role.CLIENT else Role.CLIENT
        return self._process(peer, event, RemoteProtocolError)

    def next_chunk(self, data: Buffer) -> Chunk | None:
        """The CHUNK that carries as much of ``data`` (the bytes from
        :attr:`offset` on) as the credit allows now, or None while there is
        no credit (wait for a CREDIT).  Apply it with :meth:`send` before
        asking for the next one."""
        n = next_piece(self.credit, len(data))
        if n == 0:
            return None
        return Chunk(self.id, self.offset, data[:n] if n < len(data) else data)

    def _process(self, sender: Role, event: Event, exc: type[ProtocolError]) -> Action:
        if event.id != self.id:
            raise exc(f"message for transfer {event.id} given to transfer {self.id}", transfer_id=self.id)
        kind = message_kind(event)
        key = (self.state, sender, kind)
        nxt = _TRANSITIONS.get(key)
        if nxt is None:
            error = exc(
                f"{kind} from the {sender.value} is not allowed while transfer {self.id} is {self.state.value}",
                transfer_id=self.id,
            )
            if exc is RemoteProtocolError:
                self.state = State.FAILED
            raise error
        before = self.state
        try:
            nxt = self._apply(event, nxt)
        except ValueError as err:
            if exc is RemoteProtocolError:
                self.state = State.FAILED
            raise exc(f"transfer {self.id}: {err}", transfer_id=self.id) from None
        self.state = nxt
        action = _ACTIONS[kind]
        if action is Action.OPEN and before is not State.IDLE:
            return Action.NEXT_PAGE
        if action is Action.CREDIT and before is State.DONE:
            return Action.IGNORE
        return action

    def _apply(self, event: Event, nxt: State) -> State:
        """Counter rules; raise ValueError with the reason to refuse."""
        if event.TYPE in _ANSWERS and _ANSWERS[event.TYPE] != self.kind:
            raise ValueError(f"{event.TYPE} answers a {_ANSWERS[event.TYPE].upper()}, not a {self.kind.upper()}")
        if isinstance(event, Put):
            if event.chain and event.inline:
                raise ValueError("an inline PUT cannot carry a chain: a chain upload streams as chunks")
            if event.inline:
                if event.digest is None:
                    raise ValueError("an inline PUT needs the whole-file digest")
                if len(event.data) != event.size:
                    raise ValueError(f"inline PUT declares {event.size} bytes but carries {len(event.data)}")
                if event.size > MAX_INLINE_BYTES:
                    raise ValueError(
                        f"an inline PUT carries at most {MAX_INLINE_BYTES} bytes, not {event.size}: "
                        "send a larger file as chunks"
                    )
                self.offset = event.size
            self.kind = "put"
            self.size = event.size
        elif isinstance(event, PutStream):
            self.kind = "put"
            self.streamed = True
            self.size = _UNKNOWN_SIZE
        elif isinstance(event, PutMany):
            if not event.files:
                raise ValueError("a PUT-MANY needs at least one file")
            for i, f in enumerate(event.files):
                if len(f.data) != f.size:
                    raise ValueError(f"PUT-MANY file {i} declares {f.size} bytes but carries {len(f.data)}")
            self.kind = "put-many"
            self.files = len(event.files)
            self.size = self.offset = event.size
        elif isinstance(event, PutManyOk):
            if self.kind != "put-many":
                raise ValueError("PUT-MANY-OK answers a PUT-MANY, not a PUT")
            if len(event.results) != self.files:
                raise ValueError(f"PUT-MANY-OK has {len(event.results)} results for {self.files} files")
        elif isinstance(event, PutReady):
            if self.streamed and event.offset:
                raise ValueError(f"a PUT-STREAM cannot resume, but PUT-READY says offset {event.offset}")
            if event.offset > self.size:
                raise ValueError(f"resume offset {event.offset} is past the size {self.size}")
            self.offset = self.resume_offset = event.offset
            self.credit = event.credit
        elif isinstance(event, Get):
            self.kind = "get"
            if event.offset and event.digest is None:
                raise ValueError("a resumed GET needs the digest of the partial's source")
            self.resume_offset = event.offset
            self.resume_digest = event.digest
            self.credit = event.credit
        elif isinstance(event, GetMeta):
            if event.offset not in (0, self.resume_offset):
                raise ValueError(f"GET-META offset {event.offset} is neither 0 nor the one asked for")
            if event.offset > event.size:
                raise ValueError(f"GET-META offset {event.offset} is past the size {event.size}")
            if event.offset and event.digest != self.resume_digest:
                # Resuming onto another file's partial would splice two files.
                raise ValueError("GET-META resumes a partial whose source had another digest")
            self.size = event.size
            self.offset = event.offset
            if self.offset == self.size:
                return State.DONE
        elif isinstance(event, Chunk):
            n = len(event.data)
            if n == 0:
                raise ValueError("a chunk must carry at least one byte")
            if event.offset != self.offset:
                raise ValueError(f"chunk at offset {event.offset}, expected {self.offset}")
            if event.offset + n > self.size:
                raise ValueError(f"chunk ends at {event.offset + n}, past the declared size {self.size}")
            if n > self.credit:
                raise ValueError(f"chunk of {n} bytes exceeds the credit of {self.credit}")
            self.offset += n
            self.credit -= n
            if nxt is State.GET_RECEIVING and self.offset == self.size:
                return State.DONE
        elif isinstance(event, Credit):
            if nxt is State.DONE:
                # Only a server's finished download may see (and ignore) credit
                # the client granted before the last chunk reached it.
                if self.kind != "get" or self.role is not Role.SERVER:
                    raise ValueError("CREDIT after the transfer is done")
            else:
                self.credit += event.credit
        elif isinstance(event, PutEnd):
            if self.streamed:
                if event.size is None:
                    raise ValueError("the PUT-END of a PUT-STREAM needs the size")
                if event.size != self.offset:
                    raise ValueError(f"PUT-END says {event.size} bytes, but {self.offset} were sent")
                self.size = event.size
            elif event.size not in (None, self.size):
                raise ValueError(f"PUT-END says {event.size} bytes, the PUT {self.size}")
            if self.offset != self.size:
                raise ValueError(f"PUT-END after {self.offset} of {self.size} bytes")
        elif isinstance(event, PutOk):
            if self.kind != "put":
                raise ValueError("PUT-OK answers a PUT, not a PUT-MANY")
            if event.size != self.size:
                raise ValueError(f"PUT-OK for {event.size} bytes, sent {self.size}")
        elif isinstance(event, GetMany):
            if not event.names:
                raise ValueError("a GET-MANY needs at least one name")
            if not 0 <= event.most <= MAX_MANY_BYTES:
                raise ValueError(f"a GET-MANY may ask for 0 to {MAX_MANY_BYTES} bytes, not {event.most}")
            self.kind = "get-many"
            self.files = len(event.names)
            self.credit = event.most
        elif isinstance(event, GetManyOk):
            if len(event.files) != self.files:
                raise ValueError(f"GET-MANY-OK has {len(event.files)} files for {self.files} names")
            for i, f in enumerate(event.files):
                if len(f.data) != (f.size if f.ok else 0):
                    raise ValueError(f"GET-MANY-OK file {i} declares {f.size} bytes but carries {len(f.data)}")
            if event.size > self.credit:
                raise ValueError(f"GET-MANY-OK carries {event.size} bytes, over the {self.credit} asked for")
            self.size = self.offset = event.size
        elif isinstance(event, ListRequest):
            self.kind = "list"
        elif isinstance(event, Remove):
            if bool(event.names) == bool(event.prefix):
                raise ValueError("a REMOVE gives either names or a prefix, not both and not neither")
            if event.after and not event.prefix:
                raise ValueError("a REMOVE's 'after' cursor pages a prefix; it has no use with names")
            self.kind = "remove"
            self.files = len(event.names)
            self.limit = event.limit if event.prefix else 0
        elif isinstance(event, (Move, Stat, Ping)):
            self.kind = event.TYPE.lower()
        elif isinstance(event, Check):
            n = len(event.names)
            if not n or len(event.sizes) != n:
                raise ValueError(f"a CHECK needs names and as many sizes, not {n} names and {len(event.sizes)} sizes")
            if event.mtimes_ns is not None and len(event.mtimes_ns) != n:
                raise ValueError(f"a CHECK of {n} names has {len(event.mtimes_ns)} mtimes_ns")
            self.kind = "check"
            self.files = n
        elif isinstance(event, CheckOk):
            if len(event.same) != self.files:
                raise ValueError(f"CHECK-OK has {len(event.same)} verdicts for {self.files} names")
            same = event.same.count(CHECK_SAME)
            if len(event.digests) != same:
                raise ValueError(f"CHECK-OK has {len(event.digests)} digests for {same} files found the same")
        elif isinstance(event, RemoveOk):
            found = len(event.results)
            if not self.limit and (found != self.files or event.names):
                raise ValueError(f"REMOVE-OK has {found} results and {len(event.names)} names for {self.files} names")
            if self.limit and (found != len(event.names) or found > self.limit):
                raise ValueError(f"REMOVE-OK has {found} results for {len(event.names)} names (limit {self.limit})")
        elif isinstance(event, ListPage):
            self.more = event.more
            if not event.more:
                return State.DONE
        return nxt
