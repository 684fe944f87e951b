"""The checks of single values and of a CHECK's arrays that the message
schemas (:mod:`zfile.protocol.schemas`) are made of: each takes a value
msgpack decoded and returns it, or raises ValueError saying what is wrong
with it.  Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zfile.protocol.limits import MAX_CHECK_FILES, MAX_DIGEST_BYTES, MAX_WIRE_NAME_BYTES, U63

Check = Callable[[Any], Any]


def int_range(lo: int, hi: int) -> Check:
    def check(value: Any) -> int:
        # bool is an int subclass; a true/false where a number belongs is malformed
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"must be an integer, not {type(value).__name__}")
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, not {value}")
        return value

    return check


def string(max_bytes: int) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, not {type(value).__name__}")
        if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
            raise ValueError(f"must be at most {max_bytes} bytes")
        return value

    return check


def binary(max_bytes: int) -> Check:
    def check(value: Any) -> bytes:
        if not isinstance(value, bytes):
            raise ValueError(f"must be binary, not {type(value).__name__}")
        if not 1 <= len(value) <= max_bytes:
            raise ValueError(f"must be 1 to {max_bytes} bytes long")
        return value

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {type(value).__name__}")
    return value


def number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    return float(value)


ID = int_range(0, U63)
COUNT = int_range(0, U63)
POSITIVE = int_range(1, U63)
MTIME = int_range(-(1 << 63), U63)
MODE = int_range(0, 0o7777)
NAME = string(MAX_WIRE_NAME_BYTES)
SHORT = string(64)
DIGEST = binary(MAX_DIGEST_BYTES)
TEXT = string(4096)


# Characters a string may hold and still be within its byte limit whatever
# they are (UTF-8 takes at most 4 bytes a character); an ASCII string's
# characters are its bytes.
NAME_CHARS = MAX_WIRE_NAME_BYTES // 4
SHORT_BYTES = 64
TEXT_BYTES = 4096


def array(item: Check, ok: Callable[[Any], bool], what: str, least: int = 1) -> Check:
    """A CHECK's (or CHECK-OK's) list of ``least`` to MAX_CHECK_FILES
    ``what``: each item passing ``ok`` (the common case, tested inline
    without a call per check) or else ``item``, whose error names what is
    wrong; a tuple."""

    def check(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ValueError(f"must be a list, not {type(value).__name__}")
        if not least <= len(value) <= MAX_CHECK_FILES:
            raise ValueError(f"must hold {least} to {MAX_CHECK_FILES} {what}, not {len(value)}")
        if not all(map(ok, value)):
            for i, v in enumerate(value):
                try:
                    item(v)
                except ValueError as exc:
                    raise ValueError(f"item {i} {exc}") from None
        return tuple(value)

    return check


def is_short_name(v: Any) -> bool:
    return type(v) is str and len(v) <= NAME_CHARS


def is_size(v: Any) -> bool:
    return type(v) is int and 0 <= v <= U63


def is_mtime(v: Any) -> bool:
    return type(v) is int and -(1 << 63) <= v <= U63


def is_stored_digest(v: Any) -> bool:
    return type(v) is bytes and len(v) <= MAX_DIGEST_BYTES


def stored_digest(value: Any) -> bytes:
    """A CHECK-OK's digest: empty when the file is stored under another algorithm."""
    if not isinstance(value, bytes):
        raise ValueError(f"must be binary, not {type(value).__name__}")
    if len(value) > MAX_DIGEST_BYTES:
        raise ValueError(f"must be at most {MAX_DIGEST_BYTES} bytes long")
    return value


def verdicts(value: Any) -> bytes:
    """A CHECK-OK's ``same``: one byte per file, each 0, 1 or 2."""
    if not isinstance(value, bytes):
        raise ValueError(f"must be binary, not {type(value).__name__}")
    if len(value) > MAX_CHECK_FILES:
        raise ValueError(f"must hold at most {MAX_CHECK_FILES} verdicts, not {len(value)}")
    if value.translate(None, b"\x00\x01\x02"):
        raise ValueError("must hold only the verdicts 0, 1 and 2")
    return value
