"""The protocol's limits, and the schema each message's frame 0 is checked
against: for every type, each field's check (type and range) and its
default, or ``REQUIRED`` (docs/protocol.md, "Messages" and "Limits and
defaults").  Pure: :mod:`zfile.protocol.codec` applies them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zfile.errors import RemoteProtocolError
from zfile.protocol.events import Entry, FileResult

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
#: Most entries a LIST may ask for in one LIST-PAGE (its ``limit``).
MAX_LIST_PAGE = 10_000
#: Most endpoints a PUT's ``chain`` may name (the nodes after the first hop).
MAX_CHAIN = 1024
# Slack for msgpack's own bytes around the limits above.
_FRAME_MARGIN = 64 << 10
U63 = (1 << 63) - 1

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


_ID = _int_range(0, U63)
_COUNT = _int_range(0, U63)
_POSITIVE = _int_range(1, U63)
_MTIME = _int_range(-(1 << 63), U63)
_MODE = _int_range(0, 0o7777)
_NAME = _str(MAX_WIRE_NAME_BYTES)
_SHORT = _str(64)
_DIGEST = _bin(MAX_DIGEST_BYTES)
_TEXT = _str(4096)


# Characters a string may hold and still be within its byte limit whatever
# they are (UTF-8 takes at most 4 bytes a character); an ASCII string's
# characters are its bytes.
_NAME_CHARS = MAX_WIRE_NAME_BYTES // 4
_SHORT_BYTES = 64
_TEXT_BYTES = 4096


def _entries(value: Any) -> tuple[Entry, ...]:
    """A LIST-PAGE's entries, each checked as :data:`_ENTRY_SCHEMA` says.

    A listing holds up to 10,000 entries, so the common entry (every field
    present with its exact type, strings short enough that their UTF-8
    cannot exceed the limit, or ASCII within it) is checked inline, without
    a call per field; any other entry goes through :func:`fields_of`, which
    accepts the same values and names what is wrong with the rest.
    """
    if not isinstance(value, list):
        raise ValueError(f"must be a list, not {type(value).__name__}")
    out: list[Entry] = []
    append = out.append
    for item in value:
        if type(item) is dict:
            get = item.get
            name, size, mtime, mode = get("name"), get("size"), get("mtime_ns"), get("mode")
            algo, digest, received = get("algo"), get("digest"), get("received")
            id_, peer = get("id", ""), get("peer", "")
            if (
                type(name) is str
                and (len(name) <= _NAME_CHARS or (len(name) <= MAX_WIRE_NAME_BYTES and name.isascii()))
                and type(size) is int
                and 0 <= size <= U63
                and type(mtime) is int
                and -(1 << 63) <= mtime <= U63
                and type(mode) is int
                and 0 <= mode <= 0o7777
                and type(algo) is str
                and len(algo) <= _SHORT_BYTES
                and algo.isascii()
                and type(digest) is bytes
                and 1 <= len(digest) <= MAX_DIGEST_BYTES
                and type(received) is float
                and type(id_) is str
                and len(id_) <= _SHORT_BYTES
                and id_.isascii()
                and type(peer) is str
                and len(peer) <= _TEXT_BYTES
                and peer.isascii()
            ):
                append(
                    Entry(
                        name=name,
                        size=size,
                        mtime_ns=mtime,
                        mode=mode,
                        algo=algo,
                        digest=digest,
                        received=received,
                        id=id_,
                        peer=peer,
                    )
                )
                continue
        append(Entry(**fields_of(item, _ENTRY_SCHEMA, "entry")))
    return tuple(out)


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
        return tuple(fields_of(item, schema, what) for item in value)

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
    return Entry(**fields_of(value, _ENTRY_SCHEMA, "entry"))


def _results(most: int) -> Check:
    def check(value: Any) -> tuple[FileResult, ...]:
        if not isinstance(value, list):
            raise ValueError(f"must be a list, not {type(value).__name__}")
        if len(value) > most:
            raise ValueError(f"must hold at most {most} results, not {len(value)}")
        return tuple(FileResult(**fields_of(item, _RESULT_SCHEMA, "result")) for item in value)

    return check


REQUIRED = object()

# field -> (check, default); REQUIRED marks a field that must be present
_ENTRY_SCHEMA: dict[str, tuple[Check, Any]] = {
    "name": (_NAME, REQUIRED),
    "size": (_COUNT, REQUIRED),
    "mtime_ns": (_MTIME, REQUIRED),
    "mode": (_MODE, REQUIRED),
    "algo": (_SHORT, REQUIRED),
    "digest": (_DIGEST, REQUIRED),
    "received": (_float, REQUIRED),
    "id": (_SHORT, ""),
    "peer": (_TEXT, ""),
}

_PUT_FILE_SCHEMA: dict[str, tuple[Check, Any]] = {
    "name": (_NAME, REQUIRED),
    "size": (_COUNT, REQUIRED),
    "mtime_ns": (_MTIME, REQUIRED),
    "mode": (_MODE, REQUIRED),
    "digest": (_DIGEST, REQUIRED),
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
    each checked as :func:`fields_of` checks it against ``_PUT_FILE_SCHEMA``
    (as ``_list_of`` would).  The common case (every field present and well-typed) is tested inline,
    since a message holds up to a thousand of them; any item that fails
    the quick test goes through :func:`fields_of`, whose error it raises."""
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
            and 0 <= size <= U63
            and type(mtime := item.get("mtime_ns")) is int
            and -(1 << 63) <= mtime <= U63
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
            out.append(fields_of(item, _PUT_FILE_SCHEMA, "file"))
    return tuple(out)


def _put_many_results(value: Any) -> tuple[dict[str, Any], ...]:
    """The ``results`` of a PUT-MANY-OK: a list of 1 to ``MAX_MANY_FILES``
    maps, each checked as :func:`fields_of` checks it against
    ``_RESULT_SCHEMA``, with a stored file's result (empty code and
    message, a digest) tested inline and the rest through :func:`fields_of`."""
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
            out.append(fields_of(item, _RESULT_SCHEMA, "result"))
    return tuple(out)


SCHEMAS: dict[str, dict[str, tuple[Check, Any]]] = {
    "PUT": {
        "id": (_ID, REQUIRED),
        "name": (_NAME, REQUIRED),
        "size": (_COUNT, REQUIRED),
        "mtime_ns": (_MTIME, REQUIRED),
        "mode": (_MODE, REQUIRED),
        "algo": (_SHORT, REQUIRED),
        "clobber": (_bool, True),
        "digest": (_DIGEST, None),
        "chain": (_endpoints, ()),
        "origin": (_TEXT, ""),
    },
    "PUT-MANY": {
        "id": (_ID, REQUIRED),
        "algo": (_SHORT, REQUIRED),
        "files": (_put_many_files, REQUIRED),
    },
    "PUT-MANY-OK": {
        "id": (_ID, REQUIRED),
        "results": (_put_many_results, REQUIRED),
    },
    "PUT-READY": {
        "id": (_ID, REQUIRED),
        "transfer": (_SHORT, REQUIRED),
        "offset": (_COUNT, REQUIRED),
        "credit": (_COUNT, REQUIRED),
    },
    "CHUNK": {"id": (_ID, REQUIRED), "offset": (_COUNT, REQUIRED)},
    "CREDIT": {"id": (_ID, REQUIRED), "credit": (_POSITIVE, REQUIRED)},
    "PUT-END": {"id": (_ID, REQUIRED), "digest": (_DIGEST, REQUIRED), "size": (_COUNT, None)},
    "PUT-OK": {"id": (_ID, REQUIRED), "size": (_COUNT, REQUIRED), "digest": (_DIGEST, REQUIRED)},
    "GET": {
        "id": (_ID, REQUIRED),
        "name": (_NAME, REQUIRED),
        "credit": (_POSITIVE, REQUIRED),
        "offset": (_COUNT, 0),
        "digest": (_DIGEST, None),
    },
    "GET-META": {
        "id": (_ID, REQUIRED),
        "name": (_NAME, REQUIRED),
        "size": (_COUNT, REQUIRED),
        "mtime_ns": (_MTIME, REQUIRED),
        "mode": (_MODE, REQUIRED),
        "algo": (_SHORT, REQUIRED),
        "digest": (_DIGEST, REQUIRED),
        "offset": (_COUNT, REQUIRED),
    },
    "LIST": {
        "id": (_ID, REQUIRED),
        "prefix": (_NAME, ""),
        "after": (_NAME, ""),
        "limit": (_int_range(1, MAX_LIST_PAGE), 1000),
    },
    "LIST-PAGE": {
        "id": (_ID, REQUIRED),
        "entries": (_entries, REQUIRED),
        "more": (_bool, REQUIRED),
    },
    "CANCEL": {"id": (_ID, REQUIRED)},
    "REMOVE": {
        "id": (_ID, REQUIRED),
        "names": (_names(MAX_MANY_FILES), ()),
        "prefix": (_NAME, ""),
        "after": (_NAME, ""),
        "limit": (_int_range(1, MAX_REMOVE_PAGE), MAX_REMOVE_PAGE),
    },
    "REMOVE-OK": {
        "id": (_ID, REQUIRED),
        "names": (_names(MAX_REMOVE_PAGE), ()),
        "results": (_results(max(MAX_MANY_FILES, MAX_REMOVE_PAGE)), REQUIRED),
        "more": (_bool, False),
    },
    "MOVE": {
        "id": (_ID, REQUIRED),
        "name": (_NAME, REQUIRED),
        "to": (_NAME, REQUIRED),
        "clobber": (_bool, False),
    },
    "MOVE-OK": {"id": (_ID, REQUIRED), "entry": (_entry, REQUIRED)},
    "STAT": {"id": (_ID, REQUIRED), "name": (_NAME, REQUIRED)},
    "STAT-OK": {"id": (_ID, REQUIRED), "entry": (_entry, REQUIRED)},
    "PING": {"id": (_ID, REQUIRED)},
    "PONG": {
        "id": (_ID, REQUIRED),
        "version": (_SHORT, REQUIRED),
        "protocol": (_COUNT, REQUIRED),
        "uptime": (_float, REQUIRED),
        "transfers": (_COUNT, REQUIRED),
        "curve": (_bool, REQUIRED),
        "free": (_COUNT, None),
        "read_only": (_bool, False),
    },
    "PUT-STREAM": {
        "id": (_ID, REQUIRED),
        "name": (_NAME, REQUIRED),
        "mtime_ns": (_MTIME, REQUIRED),
        "mode": (_MODE, REQUIRED),
        "algo": (_SHORT, REQUIRED),
        "clobber": (_bool, True),
    },
    "GET-MANY": {
        "id": (_ID, REQUIRED),
        "names": (_some_names, REQUIRED),
        "most": (_int_range(0, MAX_MANY_BYTES), MAX_MANY_BYTES),
    },
    "GET-MANY-OK": {
        "id": (_ID, REQUIRED),
        "files": (_list_of(_GOT_FILE_SCHEMA, "file", MAX_MANY_FILES), REQUIRED),
    },
    "ERROR": {
        "id": (_int_range(-1, U63), REQUIRED),
        "code": (_SHORT, REQUIRED),
        "message": (_TEXT, REQUIRED),
    },
    "CHAIN-RESULT": {
        "id": (_ID, REQUIRED),
        "endpoint": (_TEXT, REQUIRED),
        "code": (_SHORT, ""),
        "message": (_TEXT, ""),
        "digest": (_DIGEST, None),
    },
}

DATA_TYPES = frozenset({"CHUNK", "PUT"})


def fields_of(raw: Any, schema: dict[str, tuple[Check, Any]], what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RemoteProtocolError(f"{what} must be a map, not {type(raw).__name__}")
    out: dict[str, Any] = {}
    for key, (check, default) in schema.items():
        if key not in raw or raw[key] is None:
            if default is REQUIRED:
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
