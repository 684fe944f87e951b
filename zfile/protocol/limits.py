"""The protocol's version and limits (docs/protocol.md, "Limits and
defaults"): sizes in bytes, counts in items.  Pure."""

from __future__ import annotations

from datetime import UTC, datetime

PROTOCOL_VERSION = 4

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
#: Most files one CHECK may ask about (within frame 0's limit, too).
MAX_CHECK_FILES = MAX_LIST_PAGE
#: Most endpoints a PUT's ``chain`` may name (the nodes after the first hop).
MAX_CHAIN = 1024
# Slack for msgpack's own bytes around the limits above.
_FRAME_MARGIN = 64 << 10
U63 = (1 << 63) - 1
#: The mtimes a message can carry: nanoseconds since the epoch in a signed
#: 64-bit integer, 1677-09-21T00:12:43Z to 2262-04-11T23:47:16Z.
MTIME_MIN_NS = -(1 << 63)
MTIME_MAX_NS = U63


def mtime_outside(mtime_ns: int) -> str | None:
    """None when ``mtime_ns`` (nanoseconds since the epoch) is within
    :data:`MTIME_MIN_NS` and :data:`MTIME_MAX_NS`, else why not, as a
    clause: ``its mtime, 2446-05-10T22:38:55Z, is after
    2262-04-11T23:47:16Z, the latest zfile keeps (nanoseconds in 64
    bits)``."""
    if MTIME_MIN_NS <= mtime_ns <= MTIME_MAX_NS:
        return None
    seconds = mtime_ns // 1_000_000_000
    try:
        when = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        when = f"{seconds} s from the epoch"
    if mtime_ns > MTIME_MAX_NS:
        return f"its mtime, {when}, is after 2262-04-11T23:47:16Z, the latest zfile keeps (nanoseconds in 64 bits)"
    return f"its mtime, {when}, is before 1677-09-21T00:12:43Z, the earliest zfile keeps (nanoseconds in 64 bits)"


def max_frame_bytes(chunk_bytes: int) -> int:
    """The largest frame a legal message may hold, in bytes, for a receiver
    that lets chunks of up to ``chunk_bytes`` (its chunk size or credit
    window, whichever is larger) reach it: frame 0's limit, one chunk and a
    PUT-MANY's data together, with a margin, so that no legal frame comes
    near it.  A receiver may set it as ``ZMQ_MAXMSGSIZE`` (zmq_setsockopt(3)).
    """
    return MAX_HEADER_BYTES + chunk_bytes + MAX_MANY_BYTES + _FRAME_MARGIN
