"""Validators, conditional requests and byte ranges, without I/O (RFC 9110).

A stored file's entity tag is its whole-file digest in hex, quoted, and
strong: two versions with the same tag have the same bytes.  Its
``Last-Modified`` is the file's mtime, in whole seconds.  :func:`precondition`
evaluates ``If-Match``, ``If-Unmodified-Since``, ``If-None-Match`` and
``If-Modified-Since`` in the order of RFC 9110 §13.2.2; :func:`byte_range`
reads a ``Range`` header (§14.2) for one range of a file of known size,
honouring ``If-Range`` (§13.1.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime

from zfile.protocol.events import Entry


def etag(entry: Entry) -> str:
    """The strong entity tag of ``entry``: ``"<digest hex>"`` (quotes included)."""
    return f'"{entry.digest.hex()}"'


def last_modified(entry: Entry) -> int:
    """``entry``'s mtime in whole seconds since the epoch (HTTP dates have no finer unit)."""
    return entry.mtime_ns // 1_000_000_000


def http_date(seconds: float) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(seconds, usegmt=True)


def parse_http_date(text: str) -> int | None:
    """Seconds since the epoch of an HTTP date in any of its three formats, or
    None when it does not parse (RFC 9110 §13.1.3: then the header is ignored)."""
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return int(when.timestamp())


def _tags(header: str) -> list[tuple[bool, str]]:
    """The (weak, opaque tag with quotes) pairs of an entity-tag list; ``*`` is ``(False, "*")``."""
    out = []
    for item in header.split(","):
        item = item.strip()
        weak = item.startswith("W/")
        if weak:
            item = item[2:]
        if item == "*" or (len(item) >= 2 and item[0] == item[-1] == '"'):
            out.append((weak, item))
    return out


def precondition(method: str, headers: Mapping[str, str], entry: Entry) -> int | None:
    """The status a conditional request about ``entry`` ends with, or None to
    go on: 412 when ``If-Match`` or ``If-Unmodified-Since`` fails, 304 for a
    GET or HEAD (412 otherwise) when ``If-None-Match`` matches or, without
    it, when ``If-Modified-Since`` is no earlier than the file's mtime.
    Follows the order of RFC 9110 §13.2.2; an unparsable date is ignored."""
    tag, mtime = etag(entry), last_modified(entry)
    if_match = headers.get("If-Match")
    if if_match is not None:
        # Strong comparison: a weak tag never matches (§13.1.1).
        if not any(t == "*" or (not weak and t == tag) for weak, t in _tags(if_match)):
            return 412
    elif (since := headers.get("If-Unmodified-Since")) is not None:
        when = parse_http_date(since)
        if when is not None and mtime > when:
            return 412
    safe = method in ("GET", "HEAD")
    if_none = headers.get("If-None-Match")
    if if_none is not None:
        # Weak comparison (§13.1.2).
        if any(t in ("*", tag) for _, t in _tags(if_none)):
            return 304 if safe else 412
    elif safe and (since := headers.get("If-Modified-Since")) is not None:
        when = parse_http_date(since)
        if when is not None and mtime <= when:
            return 304
    return None


class Unsatisfiable(Exception):
    """The Range asks only for bytes past the end: answer 416 with
    ``Content-Range: bytes */<size>`` (RFC 9110 §15.5.17)."""


@dataclass(frozen=True, slots=True)
class Span:
    """Bytes ``start`` up to (not including) ``end`` of a file of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self) -> str:
        """The ``Content-Range`` value of a 206 (RFC 9110 §14.4), e.g. ``bytes 0-99/1000``."""
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


def _if_range_holds(value: str, entry: Entry) -> bool:
    value = value.strip()
    if value.startswith('"'):
        return value == etag(entry)  # strong comparison only
    when = parse_http_date(value)
    return when is not None and when == last_modified(entry)


def byte_range(headers: Mapping[str, str], entry: Entry) -> Span | None:
    """The one range of ``entry`` a GET asks for, or None for the whole file.

    None also when the header is absent, not in bytes, malformed or names
    more than one range (a server may ignore Range, RFC 9110 §14.2), and
    when ``If-Range`` names another version (§13.1.5).  A last byte past the
    end is cut to the end; a suffix range longer than the file is the whole
    file.  Raises :class:`Unsatisfiable` when the first byte is at or past the
    end, or for a zero-length suffix.
    """
    header = headers.get("Range")
    if header is None:
        return None
    if (if_range := headers.get("If-Range")) is not None and not _if_range_holds(if_range, entry):
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not all(part == "" or (part.isascii() and part.isdigit()) for part in (first, last)):
        return None
    size = entry.size
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return Span(max(size - suffix, 0), size, size)
    start = int(first)
    end = size if last == "" else int(last) + 1
    if last != "" and end <= start:
        return None  # last < first: invalid, so ignored (§14.1.1)
    if start >= size:
        raise Unsatisfiable
    return Span(start, min(end, size), size)
