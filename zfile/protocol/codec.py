"""Pure encoding and decoding of protocol events to and from frames.

Frame 0 is a msgpack map ``{"v": 3, "t": TYPE, <fields>}``; a :class:`Chunk`
and an inline :class:`Put` add frame 1, the raw file bytes; a :class:`PutMany`
and a :class:`GetManyOk` add one frame per file, in the order of their
``files``.  Decoding checks every field's type and range and raises
:class:`RemoteProtocolError` naming what was wrong; unknown fields are
ignored (docs/protocol.md, "Versions").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from zfile.errors import ErrorCode, RemoteProtocolError
from zfile.protocol.events import (
    EVENT_TYPES,
    Buffer,
    Chunk,
    Entry,
    Event,
    FileResult,
    GetMany,
    GetManyOk,
    GotFile,
    ListPage,
    Put,
    PutFile,
    PutMany,
    PutManyOk,
    RemoveOk,
)

PROTOCOL_VERSION = 3

#: Largest frame 0 accepted, in bytes; a page of 1,000 entries fits easily.
MAX_HEADER_BYTES = 4 << 20
#: Longest name the codec passes on, in bytes of UTF-8; the store applies
#: its own (smaller, configurable) limit.
MAX_WIRE_NAME_BYTES = 65536
MAX_DIGEST_BYTES = 64
#: Most files one PUT-MANY may carry, and most bytes of file data in all.
MAX_MANY_FILES = 1024
MAX_MANY_BYTES = 4 << 20
#: Most bytes an inline PUT may carry: one chunk of the default size.  A
#: larger file streams as CHUNK messages under credit.
MAX_INLINE_BYTES = 1 << 20
#: Most frames a legal message holds: frame 0 and one data frame per file
#: of the largest PUT-MANY.  A receiver refuses a longer message unread.
MAX_FRAMES = 1 + MAX_MANY_FILES
#: Most entries one REMOVE of a prefix removes; the client asks again for more.
MAX_REMOVE_PAGE = 1000
#: Most endpoints a PUT's ``chain`` may name (the nodes after the first hop).
MAX_CHAIN = 1024
# Slack for msgpack's own bytes around the limits above.
_FRAME_MARGIN = 64 << 10
_U63 = (1 << 63) - 1

Check = Callable[[Any], Any]


def max_frame_bytes(chunk_bytes: int) -> int:
    """The largest frame a legal message may hold, in bytes, for a receiver
    that lets chunks of up to ``chunk_bytes`` (its chunk size or credit
    window, whichever is larger) reach it: frame 0's limit, one chunk and a
    PUT-MANY's data together, with a margin, so that no legal frame comes
    near it.  A receiver may set it as ``ZMQ_MAXMSGSIZE`` (zmq_setsockopt(3)).
    """
    return MAX_HEADER_BYTES + chunk_bytes + MAX_MANY_BYTES + _FRAME_MARGIN


def _int_range(lo: int, hi: int) -> Check:
    def check(value: Any) -> int:
        # bool is an int subclass; a true/false where a number belongs is malformed
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"must be an integer, not {type(value).__name__}")
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, not {value}")
        return value

    return check


def _str(max_bytes: int) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, not {type(value).__name__}")
        if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
            raise ValueError(f"must be at most {max_bytes} bytes")
        return value

    return check


def _bin(max_bytes: int) -> Check:
    def check(value: Any) -> bytes:
        if not isinstance(value, bytes):
            raise ValueError(f"must be binary, not {type(value).__name__}")
        if not 1 <= len(value) <= max_bytes:
            raise ValueError(f"must be 1 to {max_bytes} bytes long")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {type(value).__name__}")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    return float(value)


_ID = _int_range(0, _U63)
_COUNT = _int_range(0, _U63)
_POSITIVE = _int_range(1, _U63)
_MTIME = _int_range(-(1 << 63), _U63)
_MODE = _int_range(0, 0o7777)
_NAME = _str(MAX_WIRE_NAME_BYTES)
_SHORT = _str(64)
_DIGEST = _bin(MAX_DIGEST_BYTES)
_TEXT = _str(4096)


def _entries(value: Any) -> tuple[Entry, ...]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list, not {type(value).__name__}")
    return tuple(Entry(**_fields(item, _ENTRY_SCHEMA, "entry")) for item in value)


def _endpoints(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list, not {type(value).__name__}")
    if len(value) > MAX_CHAIN:
        raise ValueError(f"must hold at most {MAX_CHAIN} endpoints, not {len(value)}")
    return tuple(_TEXT(item) for item in value)


def _list_of(schema: dict[str, tuple[Check, Any]], what: str, most: int) -> Check:
    def check(value: Any) -> tuple[dict[str, Any], ...]:
        if not isinstance(value, list):
            raise ValueError(f"must be a list, not {type(value).__name__}")
        if not 1 <= len(value) <= most:
            raise ValueError(f"must hold 1 to {most} items, not {len(value)}")
        return tuple(_fields(item, schema, what) for item in value)

    return check


def _names(most: int) -> Check:
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise ValueError(f"must be a list, not {type(value).__name__}")
        if len(value) > most:
            raise ValueError(f"must hold at most {most} names, not {len(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(_NAME(item))
            except ValueError as exc:
                raise ValueError(f"item {i} {exc}") from None
        return tuple(out)

    return check


def _entry(value: Any) -> Entry:
    return Entry(**_fields(value, _ENTRY_SCHEMA, "entry"))


def _results(most: int) -> Check:
    def check(value: Any) -> tuple[FileResult, ...]:
        if not isinstance(value, list):
            raise ValueError(f"must be a list, not {type(value).__name__}")
        if len(value) > most:
            raise ValueError(f"must hold at most {most} results, not {len(value)}")
        return tuple(FileResult(**_fields(item, _RESULT_SCHEMA, "result")) for item in value)

    return check


_REQUIRED = object()

# field -> (check, default); _REQUIRED marks a field that must be present
_ENTRY_SCHEMA: dict[str, tuple[Check, Any]] = {
    "name": (_NAME, _REQUIRED),
    "size": (_COUNT, _REQUIRED),
    "mtime_ns": (_MTIME, _REQUIRED),
    "mode": (_MODE, _REQUIRED),
    "algo": (_SHORT, _REQUIRED),
    "digest": (_DIGEST, _REQUIRED),
    "received": (_float, _REQUIRED),
    "id": (_SHORT, ""),
    "peer": (_TEXT, ""),
}

_PUT_FILE_SCHEMA: dict[str, tuple[Check, Any]] = {
    "name": (_NAME, _REQUIRED),
    "size": (_COUNT, _REQUIRED),
    "mtime_ns": (_MTIME, _REQUIRED),
    "mode": (_MODE, _REQUIRED),
    "digest": (_DIGEST, _REQUIRED),
    "clobber": (_bool, True),
}

_RESULT_SCHEMA: dict[str, tuple[Check, Any]] = {
    "code": (_SHORT, ""),
    "message": (_TEXT, ""),
    "digest": (_DIGEST, None),
}

_GOT_FILE_SCHEMA: dict[str, tuple[Check, Any]] = {
    "code": (_SHORT, ""),
    "message": (_TEXT, ""),
    "size": (_COUNT, 0),
    "mtime_ns": (_MTIME, 0),
    "mode": (_MODE, 0),
    "algo": (_SHORT, ""),
    "digest": (_DIGEST, None),
}


def _some_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list, not {type(value).__name__}")
    if not 1 <= len(value) <= MAX_MANY_FILES:
        raise ValueError(f"must hold 1 to {MAX_MANY_FILES} names, not {len(value)}")
    return tuple(_NAME(v) for v in value)


def _put_many_files(value: Any) -> tuple[dict[str, Any], ...]:
    """The ``files`` of a PUT-MANY: a list of 1 to ``MAX_MANY_FILES`` maps,
    each checked as :func:`_fields` checks it against ``_PUT_FILE_SCHEMA``
    (as ``_list_of`` would).  The common case (every field present and well-typed) is tested inline,
    since a message holds up to a thousand of them; any item that fails
    the quick test goes through :func:`_fields`, whose error it raises."""
    if not isinstance(value, list):
        raise ValueError(f"must be a list, not {type(value).__name__}")
    if not 1 <= len(value) <= MAX_MANY_FILES:
        raise ValueError(f"must hold 1 to {MAX_MANY_FILES} items, not {len(value)}")
    out = []
    for item in value:
        # type() is: a bool is an int subclass and must not pass as one.
        if (
            type(item) is dict
            and type(name := item.get("name")) is str
            and (
                len(name) <= MAX_WIRE_NAME_BYTES // 4
                or len(name.encode("utf-8", "surrogatepass")) <= MAX_WIRE_NAME_BYTES
            )
            and type(size := item.get("size")) is int
            and 0 <= size <= _U63
            and type(mtime := item.get("mtime_ns")) is int
            and -(1 << 63) <= mtime <= _U63
            and type(mode := item.get("mode")) is int
            and 0 <= mode <= 0o7777
            and type(digest := item.get("digest")) is bytes
            and 1 <= len(digest) <= MAX_DIGEST_BYTES
            and type(clobber := item.get("clobber", True)) is bool
        ):
            if len(item) != 6 or "clobber" not in item:  # extra keys are ignored; an absent clobber defaults
                item = {
                    "name": name,
                    "size": size,
                    "mtime_ns": mtime,
                    "mode": mode,
                    "digest": digest,
                    "clobber": clobber,
                }
            out.append(item)
        else:
            out.append(_fields(item, _PUT_FILE_SCHEMA, "file"))
    return tuple(out)


def _put_many_results(value: Any) -> tuple[dict[str, Any], ...]:
    """The ``results`` of a PUT-MANY-OK: a list of 1 to ``MAX_MANY_FILES``
    maps, each checked as :func:`_fields` checks it against
    ``_RESULT_SCHEMA``, with a stored file's result (empty code and
    message, a digest) tested inline and the rest through :func:`_fields`."""
    if not isinstance(value, list):
        raise ValueError(f"must be a list, not {type(value).__name__}")
    if not 1 <= len(value) <= MAX_MANY_FILES:
        raise ValueError(f"must hold 1 to {MAX_MANY_FILES} items, not {len(value)}")
    out = []
    for item in value:
        if (
            type(item) is dict
            and item.get("code") == ""
            and item.get("message", "") == ""
            and type(digest := item.get("digest")) is bytes
            and 1 <= len(digest) <= MAX_DIGEST_BYTES
        ):
            out.append({"code": "", "message": "", "digest": digest})
        else:
            out.append(_fields(item, _RESULT_SCHEMA, "result"))
    return tuple(out)


_SCHEMAS: dict[str, dict[str, tuple[Check, Any]]] = {
    "PUT": {
        "id": (_ID, _REQUIRED),
        "name": (_NAME, _REQUIRED),
        "size": (_COUNT, _REQUIRED),
        "mtime_ns": (_MTIME, _REQUIRED),
        "mode": (_MODE, _REQUIRED),
        "algo": (_SHORT, _REQUIRED),
        "clobber": (_bool, True),
        "digest": (_DIGEST, None),
        "chain": (_endpoints, ()),
        "origin": (_TEXT, ""),
    },
    "PUT-MANY": {
        "id": (_ID, _REQUIRED),
        "algo": (_SHORT, _REQUIRED),
        "files": (_put_many_files, _REQUIRED),
    },
    "PUT-MANY-OK": {
        "id": (_ID, _REQUIRED),
        "results": (_put_many_results, _REQUIRED),
    },
    "PUT-READY": {
        "id": (_ID, _REQUIRED),
        "transfer": (_SHORT, _REQUIRED),
        "offset": (_COUNT, _REQUIRED),
        "credit": (_COUNT, _REQUIRED),
    },
    "CHUNK": {"id": (_ID, _REQUIRED), "offset": (_COUNT, _REQUIRED)},
    "CREDIT": {"id": (_ID, _REQUIRED), "credit": (_POSITIVE, _REQUIRED)},
    "PUT-END": {"id": (_ID, _REQUIRED), "digest": (_DIGEST, _REQUIRED), "size": (_COUNT, None)},
    "PUT-OK": {"id": (_ID, _REQUIRED), "size": (_COUNT, _REQUIRED), "digest": (_DIGEST, _REQUIRED)},
    "GET": {
        "id": (_ID, _REQUIRED),
        "name": (_NAME, _REQUIRED),
        "credit": (_POSITIVE, _REQUIRED),
        "offset": (_COUNT, 0),
        "digest": (_DIGEST, None),
    },
    "GET-META": {
        "id": (_ID, _REQUIRED),
        "name": (_NAME, _REQUIRED),
        "size": (_COUNT, _REQUIRED),
        "mtime_ns": (_MTIME, _REQUIRED),
        "mode": (_MODE, _REQUIRED),
        "algo": (_SHORT, _REQUIRED),
        "digest": (_DIGEST, _REQUIRED),
        "offset": (_COUNT, _REQUIRED),
    },
    "LIST": {
        "id": (_ID, _REQUIRED),
        "prefix": (_NAME, ""),
        "after": (_NAME, ""),
        "limit": (_int_range(1, 10_000), 1000),
    },
    "LIST-PAGE": {
        "id": (_ID, _REQUIRED),
        "entries": (_entries, _REQUIRED),
        "more": (_bool, _REQUIRED),
    },
    "CANCEL": {"id": (_ID, _REQUIRED)},
    "REMOVE": {
        "id": (_ID, _REQUIRED),
        "names": (_names(MAX_MANY_FILES), ()),
        "prefix": (_NAME, ""),
        "after": (_NAME, ""),
        "limit": (_int_range(1, MAX_REMOVE_PAGE), MAX_REMOVE_PAGE),
    },
    "REMOVE-OK": {
        "id": (_ID, _REQUIRED),
        "names": (_names(MAX_REMOVE_PAGE), ()),
        "results": (_results(max(MAX_MANY_FILES, MAX_REMOVE_PAGE)), _REQUIRED),
        "more": (_bool, False),
    },
    "MOVE": {
        "id": (_ID, _REQUIRED),
        "name": (_NAME, _REQUIRED),
        "to": (_NAME, _REQUIRED),
        "clobber": (_bool, False),
    },
    "MOVE-OK": {"id": (_ID, _REQUIRED), "entry": (_entry, _REQUIRED)},
    "STAT": {"id": (_ID, _REQUIRED), "name": (_NAME, _REQUIRED)},
    "STAT-OK": {"id": (_ID, _REQUIRED), "entry": (_entry, _REQUIRED)},
    "PING": {"id": (_ID, _REQUIRED)},
    "PONG": {
        "id": (_ID, _REQUIRED),
        "version": (_SHORT, _REQUIRED),
        "protocol": (_COUNT, _REQUIRED),
        "uptime": (_float, _REQUIRED),
        "transfers": (_COUNT, _REQUIRED),
        "curve": (_bool, _REQUIRED),
        "free": (_COUNT, None),
    },
    "PUT-STREAM": {
        "id": (_ID, _REQUIRED),
        "name": (_NAME, _REQUIRED),
        "mtime_ns": (_MTIME, _REQUIRED),
        "mode": (_MODE, _REQUIRED),
        "algo": (_SHORT, _REQUIRED),
        "clobber": (_bool, True),
    },
    "GET-MANY": {
        "id": (_ID, _REQUIRED),
        "names": (_some_names, _REQUIRED),
        "most": (_int_range(0, MAX_MANY_BYTES), MAX_MANY_BYTES),
    },
    "GET-MANY-OK": {
        "id": (_ID, _REQUIRED),
        "files": (_list_of(_GOT_FILE_SCHEMA, "file", MAX_MANY_FILES), _REQUIRED),
    },
    "ERROR": {
        "id": (_int_range(-1, _U63), _REQUIRED),
        "code": (_SHORT, _REQUIRED),
        "message": (_TEXT, _REQUIRED),
    },
    "CHAIN-RESULT": {
        "id": (_ID, _REQUIRED),
        "endpoint": (_TEXT, _REQUIRED),
        "code": (_SHORT, ""),
        "message": (_TEXT, ""),
        "digest": (_DIGEST, None),
    },
}

_DATA_TYPES = frozenset({"CHUNK", "PUT"})


def _fields(raw: Any, schema: dict[str, tuple[Check, Any]], what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RemoteProtocolError(f"{what} must be a map, not {type(raw).__name__}")
    out: dict[str, Any] = {}
    for key, (check, default) in schema.items():
        if key not in raw or raw[key] is None:
            if default is _REQUIRED:
                raise RemoteProtocolError(f"{what} lacks field {key!r}")
            out[key] = default
            continue
        try:
            out[key] = check(raw[key])
        except ValueError as exc:
            raise RemoteProtocolError(f"{what} field {key!r} {exc}") from None
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{what} field {key!r}: {exc}") from None
    return out


# Room in a LIST-PAGE's frame 0 for what is not an entry (v, t, id, more,
# the array's own header).
_PAGE_SLACK = 1024


def page_fit(entries: Sequence[Entry], budget: int = MAX_HEADER_BYTES) -> int:
    """How many of ``entries``, from the first, one LIST-PAGE can carry with
    its frame 0 within ``budget`` bytes (default ``MAX_HEADER_BYTES``, the
    most a receiver decodes); at least one, since a name is at most
    ``MAX_WIRE_NAME_BYTES``.  A page cut short says ``more``, and the next
    starts after its last name (docs/protocol.md, "LIST-PAGE")."""
    room = budget - _PAGE_SLACK
    for count, entry in enumerate(entries):
        room -= len(msgpack.packb(_entry_map(entry), use_bin_type=True))
        if room < 0:
            return max(count, 1)
    return len(entries)


def _leading_id(head: Buffer) -> int | None:
    """The ``id`` of a frame 0 too long to decode, read from its first
    fields only (encode() puts ``v``, ``t`` and ``id`` first), so that the
    refusal still names its transfer."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
    unpacker.feed(bytes(memoryview(head)[:4096]))
    try:
        for _ in range(min(unpacker.read_map_header(), 8)):
            if unpacker.unpack() == "id":
                return _header_id({"id": unpacker.unpack()})
            unpacker.skip()
    except Exception:  # msgpack raises several unrelated types on bad or cut input
        return None
    return None


def _header_id(header: Any) -> int | None:
    if isinstance(header, dict):
        value = header.get("id")
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _U63:
            return value
    return None


def decode(frames: Sequence[Buffer]) -> Event:
    """Decode one multipart message (a sequence of frames) into an event.

    Raises :class:`RemoteProtocolError` (code ``bad-request``, or
    ``unsupported-version`` for another protocol version) saying what was
    wrong; ``transfer_id`` is set when the message's id could be read.
    """
    if not frames:
        raise RemoteProtocolError("empty message")
    if len(frames) > MAX_FRAMES:
        raise RemoteProtocolError(f"message has {len(frames)} frames; at most {MAX_FRAMES} frames are allowed")
    head = frames[0]
    if len(head) > MAX_HEADER_BYTES:
        raise RemoteProtocolError(
            f"header frame is {len(head)} bytes, over {MAX_HEADER_BYTES}", transfer_id=_leading_id(head)
        )
    try:
        header = msgpack.unpackb(head, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise RemoteProtocolError(f"header frame is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise RemoteProtocolError(f"header frame must be a msgpack map, not {type(header).__name__}")
    tid = _header_id(header)
    version = header.get("v")
    # type() and not ==: true and 1.0 compare equal to 1 but are not version 1
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise RemoteProtocolError(
            f"protocol version {version!r} is not supported (this side speaks {PROTOCOL_VERSION})",
            code=ErrorCode.UNSUPPORTED_VERSION,
            transfer_id=tid,
        )
    kind = header.get("t")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {kind!r}", transfer_id=tid)
    try:
        fields = _fields(header, _SCHEMAS[kind], kind)
    except RemoteProtocolError as exc:
        exc.transfer_id = tid
        raise
    n_frames = len(frames)
    if kind == "PUT-MANY":
        return _put_many(fields, frames, tid)
    if kind == "GET-MANY-OK":
        return _get_many_ok(fields, frames, tid)
    if kind == "CHUNK":
        if n_frames != 2:
            raise RemoteProtocolError(f"CHUNK needs 2 frames, got {n_frames}", transfer_id=tid)
        if len(frames[1]) == 0:
            raise RemoteProtocolError("CHUNK carries no bytes", transfer_id=tid)
        return Chunk(data=frames[1], **fields)
    if kind == "PUT" and n_frames == 2:
        data = frames[1]
        if fields["digest"] is None:
            raise RemoteProtocolError("inline PUT lacks field 'digest'", transfer_id=tid)
        if len(data) != fields["size"]:
            raise RemoteProtocolError(
                f"inline PUT declares {fields['size']} bytes but carries {len(data)}",
                transfer_id=tid,
            )
        if len(data) > MAX_INLINE_BYTES:
            raise RemoteProtocolError(_inline_too_big(len(data)), transfer_id=tid)
        return Put(data=data, **fields)
    if n_frames != 1:
        raise RemoteProtocolError(f"{kind} needs 1 frame, got {n_frames}", transfer_id=tid)
    if kind == "PUT-MANY-OK":
        return PutManyOk(
            fields["id"], tuple(FileResult(r["code"], r["message"], r["digest"]) for r in fields["results"])
        )
    return cls(**fields)


def _inline_too_big(size: int) -> str:
    return f"an inline PUT carries at most {MAX_INLINE_BYTES} bytes, not {size}: send a larger file as chunks"


def _put_many(fields: dict[str, Any], frames: Sequence[Buffer], tid: int | None) -> PutMany:
    heads = fields["files"]
    if len(frames) != 1 + len(heads):
        raise RemoteProtocolError(
            f"PUT-MANY lists {len(heads)} files and needs {1 + len(heads)} frames, got {len(frames)}",
            transfer_id=tid,
        )
    total = 0
    for i, (head, data) in enumerate(zip(heads, frames[1:], strict=True)):
        if len(data) != head["size"]:
            raise RemoteProtocolError(
                f"PUT-MANY file {i} declares {head['size']} bytes but carries {len(data)}", transfer_id=tid
            )
        total += len(data)
    if total > MAX_MANY_BYTES:
        raise RemoteProtocolError(f"PUT-MANY carries {total} bytes, over {MAX_MANY_BYTES}", transfer_id=tid)
    files = tuple(
        PutFile(h["name"], h["size"], h["mtime_ns"], h["mode"], h["digest"], h["clobber"], data)
        for h, data in zip(heads, frames[1:], strict=True)
    )
    return PutMany(fields["id"], fields["algo"], files)


def _get_many_ok(fields: dict[str, Any], frames: Sequence[Buffer], tid: int | None) -> GetManyOk:
    heads = fields["files"]
    if len(frames) != 1 + len(heads):
        raise RemoteProtocolError(
            f"GET-MANY-OK lists {len(heads)} files and needs {1 + len(heads)} frames, got {len(frames)}",
            transfer_id=tid,
        )
    total = 0
    for i, (head, data) in enumerate(zip(heads, frames[1:], strict=True)):
        if head["code"]:
            if len(data) or head["size"]:
                raise RemoteProtocolError(f"GET-MANY-OK file {i} is refused but carries data", transfer_id=tid)
            continue
        if head["digest"] is None or not head["algo"]:
            raise RemoteProtocolError(f"GET-MANY-OK file {i} lacks its algo or digest", transfer_id=tid)
        if len(data) != head["size"]:
            raise RemoteProtocolError(
                f"GET-MANY-OK file {i} declares {head['size']} bytes but carries {len(data)}", transfer_id=tid
            )
        total += len(data)
    if total > MAX_MANY_BYTES:
        raise RemoteProtocolError(f"GET-MANY-OK carries {total} bytes, over {MAX_MANY_BYTES}", transfer_id=tid)
    files = tuple(GotFile(data=data, **head) for head, data in zip(heads, frames[1:], strict=True))
    return GetManyOk(fields["id"], files)


def _got_map(f: GotFile) -> dict[str, Any]:
    if f.code:
        return {"code": f.code, "message": f.message}
    return {"size": f.size, "mtime_ns": f.mtime_ns, "mode": f.mode, "algo": f.algo, "digest": f.digest}


def _file_map(f: PutFile) -> dict[str, Any]:
    return {
        "name": f.name,
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "mode": f.mode,
        "digest": f.digest,
        "clobber": f.clobber,
    }


def _result_map(r: FileResult) -> dict[str, Any]:
    out: dict[str, Any] = {"code": r.code, "message": r.message}
    if r.digest is not None:
        out["digest"] = r.digest
    return out


def _entry_map(entry: Entry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "size": entry.size,
        "mtime_ns": entry.mtime_ns,
        "mode": entry.mode,
        "algo": entry.algo,
        "digest": entry.digest,
        "received": entry.received,
        "id": entry.id,
        "peer": entry.peer,
    }


def encode(event: Event) -> list[Buffer]:
    """Encode an event as the frames of one multipart message.

    The data frame, when there is one, is the caller's buffer itself (no
    copy), so it can be sent zero-copy.
    """
    kind = event.TYPE
    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "t": kind}
    for key in _SCHEMAS[kind]:
        value = getattr(event, key)
        if value is None:
            continue
        if isinstance(event, ListPage) and key == "entries":
            value = [_entry_map(e) for e in value]
        elif isinstance(event, PutMany) and key == "files":
            value = [_file_map(f) for f in value]
        elif isinstance(event, (PutManyOk, RemoveOk)) and key == "results":
            value = [_result_map(r) for r in value]
        elif isinstance(value, Entry):
            value = _entry_map(value)
        elif isinstance(event, GetManyOk) and key == "files":
            value = [_got_map(f) for f in value]
        elif isinstance(event, GetMany) and key == "names":
            value = list(value)
        elif isinstance(event, Put) and key == "chain":
            if not value:
                continue
            value = list(value)
        elif isinstance(event, Put) and key == "origin" and not value:
            continue
        header[key] = value
    frames: list[Buffer] = [msgpack.packb(header, use_bin_type=True)]
    if isinstance(event, PutMany | GetManyOk):
        frames.extend(f.data for f in event.files)
    if kind in _DATA_TYPES:
        data = event.data  # type: ignore[union-attr]
        if data is not None:
            frames.append(data)
    return frames
