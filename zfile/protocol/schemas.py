"""The schema each message's frame 0 is checked against: for every type,
each field's check (type and range, :mod:`zfile.protocol.checks`) and its
default, or ``REQUIRED`` (docs/protocol.md, "Messages"; the limits are
:mod:`zfile.protocol.limits`).  Pure: :mod:`zfile.protocol.codec` applies
them.
"""

from __future__ import annotations

from typing import Any

from zfile.errors import RemoteProtocolError
from zfile.protocol.checks import (
    COUNT,
    DIGEST,
    ID,
    MODE,
    MTIME,
    NAME,
    NAME_CHARS,
    POSITIVE,
    SHORT,
    SHORT_BYTES,
    TEXT,
    TEXT_BYTES,
    Check,
    array,
    boolean,
    int_range,
    is_mtime,
    is_short_name,
    is_size,
    is_stored_digest,
    number,
    stored_digest,
    verdicts,
)
from zfile.protocol.events import Entry, FileResult
from zfile.protocol.limits import (
    MAX_CHAIN,
    MAX_DIGEST_BYTES,
    MAX_LIST_PAGE,
    MAX_MANY_BYTES,
    MAX_MANY_FILES,
    MAX_REMOVE_PAGE,
    MAX_WIRE_NAME_BYTES,
    U63,
)


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
                and (len(name) <= NAME_CHARS or (len(name) <= MAX_WIRE_NAME_BYTES and name.isascii()))
                and type(size) is int
                and 0 <= size <= U63
                and type(mtime) is int
                and -(1 << 63) <= mtime <= U63
                and type(mode) is int
                and 0 <= mode <= 0o7777
                and type(algo) is str
                and len(algo) <= SHORT_BYTES
                and algo.isascii()
                and type(digest) is bytes
                and 1 <= len(digest) <= MAX_DIGEST_BYTES
                and type(received) is float
                and type(id_) is str
                and len(id_) <= SHORT_BYTES
                and id_.isascii()
                and type(peer) is str
                and len(peer) <= TEXT_BYTES
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
    return tuple(TEXT(item) for item in value)


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
                out.append(NAME(item))
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
    "name": (NAME, REQUIRED),
    "size": (COUNT, REQUIRED),
    "mtime_ns": (MTIME, REQUIRED),
    "mode": (MODE, REQUIRED),
    "algo": (SHORT, REQUIRED),
    "digest": (DIGEST, REQUIRED),
    "received": (number, REQUIRED),
    "id": (SHORT, ""),
    "peer": (TEXT, ""),
}

_PUT_FILE_SCHEMA: dict[str, tuple[Check, Any]] = {
    "name": (NAME, REQUIRED),
    "size": (COUNT, REQUIRED),
    "mtime_ns": (MTIME, REQUIRED),
    "mode": (MODE, REQUIRED),
    "digest": (DIGEST, REQUIRED),
    "clobber": (boolean, True),
}

_RESULT_SCHEMA: dict[str, tuple[Check, Any]] = {
    "code": (SHORT, ""),
    "message": (TEXT, ""),
    "digest": (DIGEST, None),
}

_GOT_FILE_SCHEMA: dict[str, tuple[Check, Any]] = {
    "code": (SHORT, ""),
    "message": (TEXT, ""),
    "size": (COUNT, 0),
    "mtime_ns": (MTIME, 0),
    "mode": (MODE, 0),
    "algo": (SHORT, ""),
    "digest": (DIGEST, None),
}


def _some_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list, not {type(value).__name__}")
    if not 1 <= len(value) <= MAX_MANY_FILES:
        raise ValueError(f"must hold 1 to {MAX_MANY_FILES} names, not {len(value)}")
    return tuple(NAME(v) for v in value)


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
        "id": (ID, REQUIRED),
        "name": (NAME, REQUIRED),
        "size": (COUNT, REQUIRED),
        "mtime_ns": (MTIME, REQUIRED),
        "mode": (MODE, REQUIRED),
        "algo": (SHORT, REQUIRED),
        "clobber": (boolean, True),
        "digest": (DIGEST, None),
        "chain": (_endpoints, ()),
        "origin": (TEXT, ""),
    },
    "PUT-MANY": {
        "id": (ID, REQUIRED),
        "algo": (SHORT, REQUIRED),
        "files": (_put_many_files, REQUIRED),
    },
    "PUT-MANY-OK": {
        "id": (ID, REQUIRED),
        "results": (_put_many_results, REQUIRED),
    },
    "PUT-READY": {
        "id": (ID, REQUIRED),
        "transfer": (SHORT, REQUIRED),
        "offset": (COUNT, REQUIRED),
        "credit": (COUNT, REQUIRED),
    },
    "CHUNK": {"id": (ID, REQUIRED), "offset": (COUNT, REQUIRED)},
    "CREDIT": {"id": (ID, REQUIRED), "credit": (POSITIVE, REQUIRED)},
    "PUT-END": {"id": (ID, REQUIRED), "digest": (DIGEST, REQUIRED), "size": (COUNT, None)},
    "PUT-OK": {"id": (ID, REQUIRED), "size": (COUNT, REQUIRED), "digest": (DIGEST, REQUIRED)},
    "GET": {
        "id": (ID, REQUIRED),
        "name": (NAME, REQUIRED),
        "credit": (POSITIVE, REQUIRED),
        "offset": (COUNT, 0),
        "digest": (DIGEST, None),
    },
    "GET-META": {
        "id": (ID, REQUIRED),
        "name": (NAME, REQUIRED),
        "size": (COUNT, REQUIRED),
        "mtime_ns": (MTIME, REQUIRED),
        "mode": (MODE, REQUIRED),
        "algo": (SHORT, REQUIRED),
        "digest": (DIGEST, REQUIRED),
        "offset": (COUNT, REQUIRED),
    },
    "LIST": {
        "id": (ID, REQUIRED),
        "prefix": (NAME, ""),
        "after": (NAME, ""),
        "limit": (int_range(1, MAX_LIST_PAGE), 1000),
    },
    "LIST-PAGE": {
        "id": (ID, REQUIRED),
        "entries": (_entries, REQUIRED),
        "more": (boolean, REQUIRED),
    },
    "CANCEL": {"id": (ID, REQUIRED)},
    "REMOVE": {
        "id": (ID, REQUIRED),
        "names": (_names(MAX_MANY_FILES), ()),
        "prefix": (NAME, ""),
        "after": (NAME, ""),
        "limit": (int_range(1, MAX_REMOVE_PAGE), MAX_REMOVE_PAGE),
    },
    "REMOVE-OK": {
        "id": (ID, REQUIRED),
        "names": (_names(MAX_REMOVE_PAGE), ()),
        "results": (_results(max(MAX_MANY_FILES, MAX_REMOVE_PAGE)), REQUIRED),
        "more": (boolean, False),
    },
    "MOVE": {
        "id": (ID, REQUIRED),
        "name": (NAME, REQUIRED),
        "to": (NAME, REQUIRED),
        "clobber": (boolean, False),
    },
    "MOVE-OK": {"id": (ID, REQUIRED), "entry": (_entry, REQUIRED)},
    "STAT": {"id": (ID, REQUIRED), "name": (NAME, REQUIRED)},
    "STAT-OK": {"id": (ID, REQUIRED), "entry": (_entry, REQUIRED)},
    "PING": {"id": (ID, REQUIRED)},
    "CHECK": {
        "id": (ID, REQUIRED),
        "algo": (SHORT, REQUIRED),
        "names": (array(NAME, is_short_name, "names"), REQUIRED),
        "sizes": (array(COUNT, is_size, "sizes"), REQUIRED),
        "mtimes_ns": (array(MTIME, is_mtime, "mtimes"), None),
    },
    "CHECK-OK": {
        "id": (ID, REQUIRED),
        "same": (verdicts, REQUIRED),
        "digests": (array(stored_digest, is_stored_digest, "digests", least=0), ()),
    },
    "PONG": {
        "id": (ID, REQUIRED),
        "version": (SHORT, REQUIRED),
        "protocol": (COUNT, REQUIRED),
        "uptime": (number, REQUIRED),
        "transfers": (COUNT, REQUIRED),
        "curve": (boolean, REQUIRED),
        "free": (COUNT, None),
        "read_only": (boolean, False),
    },
    "PUT-STREAM": {
        "id": (ID, REQUIRED),
        "name": (NAME, REQUIRED),
        "mtime_ns": (MTIME, REQUIRED),
        "mode": (MODE, REQUIRED),
        "algo": (SHORT, REQUIRED),
        "clobber": (boolean, True),
    },
    "GET-MANY": {
        "id": (ID, REQUIRED),
        "names": (_some_names, REQUIRED),
        "most": (int_range(0, MAX_MANY_BYTES), MAX_MANY_BYTES),
    },
    "GET-MANY-OK": {
        "id": (ID, REQUIRED),
        "files": (_list_of(_GOT_FILE_SCHEMA, "file", MAX_MANY_FILES), REQUIRED),
    },
    "ERROR": {
        "id": (int_range(-1, U63), REQUIRED),
        "code": (SHORT, REQUIRED),
        "message": (TEXT, REQUIRED),
    },
    "CHAIN-RESULT": {
        "id": (ID, REQUIRED),
        "endpoint": (TEXT, REQUIRED),
        "code": (SHORT, ""),
        "message": (TEXT, ""),
        "digest": (DIGEST, None),
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
