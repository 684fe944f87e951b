"""Validation of the file names clients send to the store.

A stored file's name is a relative POSIX path, ``/``-separated, that the store
joins to its root.  Every rule here exists so that joining can never land
outside the root or in the store's private directory (``.zfile``), and so that
a name survives the round trip through UTF-8 (the catalog and the wire both
carry UTF-8).  Symbolic links inside the root are the store's concern
(``zfile.store``); this module looks only at the string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from zfile.errors import BadName

#: The store's private directory under its root (catalog, partial uploads).
PRIVATE_DIR = ".zfile"

#: Longest component of a name, in bytes of UTF-8: NAME_MAX of Linux file
#: systems, so every stored name can be a path on the daemon's disk.
MAX_COMPONENT_BYTES = 255

_QUOTE_CHARS = 60

# C0 (below 32), DEL, and C1 (U+0080-U+009F; a terminal reads U+009B as CSI).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _is_control(char: str) -> bool:
    # C0 (below 32), DEL, and C1 (U+0080-U+009F; a terminal reads U+009B as CSI)
    code = ord(char)
    return code < 32 or 127 <= code <= 159


def quote_name(name: str) -> str:
    """Return ``repr(name)``, cut to about 60 characters so an error message
    about a hostile 100 KiB name stays one readable line."""
    if len(name) <= _QUOTE_CHARS:
        return repr(name)
    return f"{name[:_QUOTE_CHARS]!r}... ({len(name)} characters)"


def _check(name: str, max_bytes: int, what: str) -> None:
    if not isinstance(name, str):
        raise BadName(f"a {what} must be a string, not {type(name).__name__}")
    if not name:
        raise BadName(f"the {what} is empty")
    if _plain(name, max_bytes):
        return
    q = quote_name(name)
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise BadName(f"the {what} {q} cannot be encoded as UTF-8 (it holds a lone surrogate)")
    if len(encoded) > max_bytes:
        raise BadName(f"the {what} {q} is {len(encoded)} bytes long in UTF-8; the limit is {max_bytes} bytes")
    for char in name:
        if _is_control(char):
            raise BadName(f"the {what} {q} contains the control character {char!r}")
    if name.startswith("/"):
        raise BadName(f"the {what} {q} is absolute; names are relative to the store")
    parts = name.split("/")
    for part in parts:
        if part == "":
            raise BadName(f"the {what} {q} has an empty component ('//' or a trailing '/')")
        if part in (".", ".."):
            raise BadName(f"the {what} {q} has a {part!r} component")
        if (length := len(part.encode("utf-8"))) > MAX_COMPONENT_BYTES:
            raise BadName(
                f"the {what} {q} has a component of {length} bytes; the limit is {MAX_COMPONENT_BYTES} bytes (NAME_MAX)"
            )
    if parts[0] == PRIVATE_DIR:
        raise BadName(f"the {what} {q} is inside the store's private directory {PRIVATE_DIR!r}")


def _plain(name: str, max_bytes: int) -> bool:
    """True when ``name`` passes every rule of :func:`_check`, tested with a
    few C-speed string operations (the daemon checks thousands of names a
    second); False says only that the full checks must run."""
    # ASCII only: then characters are UTF-8 bytes, and no surrogate or C1 control is there.
    if not name.isascii() or len(name) > max_bytes or _CONTROL.search(name):
        return False
    if name[0] == "/" or name[-1] == "/" or "//" in name:
        return False
    parts = name.split("/")
    return (
        parts[0] != PRIVATE_DIR
        and "." not in parts
        and ".." not in parts
        and max(map(len, parts)) <= MAX_COMPONENT_BYTES
    )


def check_name(name: str, max_bytes: int = 4096) -> str:
    """Validate a client-supplied relative file name and return it unchanged.

    Raises :class:`~zfile.errors.BadName` (message quoting the name with
    ``!r``, shortened when long) when ``name`` is not a string, is empty, is
    not encodable as UTF-8 (lone surrogates), is longer than ``max_bytes``
    bytes in UTF-8, contains NUL or another control character (code point
    < 32, 127, or C1: U+0080 to U+009F), is absolute, has an empty
    (``a//b``, trailing ``/``), ``.`` or ``..`` component or one over
    :data:`MAX_COMPONENT_BYTES` (255) bytes in UTF-8, or starts with the
    private ``.zfile`` component.
    A backslash is an ordinary POSIX file name character and is allowed.
    """
    _check(name, max_bytes, "file name")
    return name


def check_prefix(prefix: str, max_bytes: int = 4096) -> str:
    """Validate a name prefix for listing and return it unchanged.

    ``""`` (everything) and one trailing ``/`` (a directory's contents) are
    allowed; otherwise the rules, and the :class:`~zfile.errors.BadName`
    raised, are those of :func:`check_name`.  ``max_bytes`` counts UTF-8
    bytes of the whole prefix.
    """
    if prefix == "":
        return prefix
    if isinstance(prefix, str) and len(prefix.encode("utf-8", "surrogatepass")) > max_bytes:
        raise BadName(f"the prefix {quote_name(prefix)} is longer than {max_bytes} bytes in UTF-8")
    body = prefix[:-1] if isinstance(prefix, str) and prefix.endswith("/") else prefix
    if body == "":
        raise BadName("the prefix '/' is absolute; names are relative to the store")
    _check(body, max_bytes, "prefix")
    return prefix


#: Files named on their own above which one listing of the whole store is
#: cheaper than one listing per name.
BARE_NAMES_MAX = 64


def listing_prefixes(names: Iterable[str]) -> list[str]:
    """The LIST prefixes whose entries hold every one of ``names`` (stored
    names; a directory's may end in ``/``): the first directory of each
    name below one, each top-level name on its own, or ``""`` (the whole
    store) in place of more than :data:`BARE_NAMES_MAX` top-level names;
    sorted, each once."""
    wanted = set(names)
    prefixes = {n.split("/", 1)[0] + "/" for n in wanted if "/" in n}
    bare = [n for n in wanted if "/" not in n]
    if len(bare) > BARE_NAMES_MAX or "" in bare:
        return [""]
    prefixes.update(bare)
    return sorted(prefixes)
