"""Pure encoding and decoding of protocol events to and from frames.

Frame 0 is a msgpack map ``{"v": 3, "t": TYPE, <fields>}``; a :class:`Chunk`
and an inline :class:`Put` add frame 1, the raw file bytes; a :class:`PutMany`
and a :class:`GetManyOk` add one frame per file, in the order of their
``files``.  Decoding checks every field's type and range and raises
:class:`RemoteProtocolError` naming what was wrong; unknown fields are
ignored (docs/protocol.md, "Versions").
"""

from __future__ import annotations

from collections.abc import Sequence
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
from zfile.protocol.limits import (
    MAX_CHAIN,
    MAX_CHECK_FILES,
    MAX_DIGEST_BYTES,
    MAX_FRAMES,
    MAX_HEADER_BYTES,
    MAX_INLINE_BYTES,
    MAX_LIST_PAGE,
    MAX_MANY_BYTES,
    MAX_MANY_FILES,
    MAX_REMOVE_PAGE,
    MAX_WIRE_NAME_BYTES,
    PROTOCOL_VERSION,
    U63,
    max_frame_bytes,
)
from zfile.protocol.schemas import DATA_TYPES, SCHEMAS, fields_of

# The limits are the codec's to name (docs/protocol.md, "Limits and defaults").
__all__ = [
    "MAX_CHAIN",
    "MAX_CHECK_FILES",
    "MAX_DIGEST_BYTES",
    "MAX_FRAMES",
    "MAX_HEADER_BYTES",
    "MAX_INLINE_BYTES",
    "MAX_MANY_BYTES",
    "MAX_MANY_FILES",
    "MAX_LIST_PAGE",
    "MAX_REMOVE_PAGE",
    "MAX_WIRE_NAME_BYTES",
    "PROTOCOL_VERSION",
    "decode",
    "encode",
    "max_frame_bytes",
    "page_fit",
]

# Room in a LIST-PAGE's frame 0 for what is not an entry (v, t, id, more,
# the array's own header).
_PAGE_SLACK = 1024
# Most bytes an entry's map takes beyond its strings and digest: the map
# header, 9 keys (56 bytes with their headers), 5 string and binary headers
# (3 bytes each for the short ones, 5 for a long name), 3 integers and a
# float of 9 bytes each.
_ENTRY_OVERHEAD = 128


def page_fit(entries: Sequence[Entry], budget: int = MAX_HEADER_BYTES) -> int:
    """How many of ``entries``, from the first, one LIST-PAGE can carry with
    its frame 0 within ``budget`` bytes (default ``MAX_HEADER_BYTES``, the
    most a receiver decodes); at least one, since a name is at most
    ``MAX_WIRE_NAME_BYTES``.  A page cut short says ``more``, and the next
    starts after its last name (docs/protocol.md, "LIST-PAGE")."""
    room = budget - _PAGE_SLACK
    # An entry's map is its strings' UTF-8 and its digest plus at most
    # _ENTRY_OVERHEAD bytes of keys, headers and numbers: when that bound
    # fits, the page does, without packing each entry to measure it.
    bound = sum(
        len(f"{e.name}{e.algo}{e.id}{e.peer}".encode("utf-8", "surrogatepass")) + len(e.digest) for e in entries
    )
    if bound + _ENTRY_OVERHEAD * len(entries) <= room:
        return len(entries)
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
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U63:
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
        fields = fields_of(header, SCHEMAS[kind], kind)
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
    for key in SCHEMAS[kind]:
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
    if kind in DATA_TYPES:
        data = event.data  # type: ignore[union-attr]
        if data is not None:
            frames.append(data)
    return frames
