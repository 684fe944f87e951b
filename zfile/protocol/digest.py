"""Whole-file digest algorithms, computed while bytes stream (no file I/O here;
:mod:`zfile.fileio.hashing` hashes a file on disk).

BLAKE3 (https://github.com/BLAKE3-team/BLAKE3) is the default: measured on a
2-core machine at 8.5 GiB/s against 1.7 GiB/s for SHA-256, and its ``update``
releases the GIL for large buffers.
"""

from __future__ import annotations

from typing import Protocol

import blake3

from zfile.errors import ErrorCode, ZfileError

DEFAULT_ALGO = "blake3"


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...
    def digest(self) -> bytes: ...


_ALGORITHMS = {"blake3": blake3.blake3}


def new_hasher(algo: str = DEFAULT_ALGO) -> Hasher:
    """Return a fresh hasher for ``algo``.

    Raises :class:`ZfileError` (code ``bad-request``) for an algorithm this
    side does not implement.
    """
    try:
        return _ALGORITHMS[algo]()
    except KeyError:
        raise ZfileError(
            f"digest algorithm {algo!r} is not supported (supported: {', '.join(_ALGORITHMS)})",
            code=ErrorCode.BAD_REQUEST,
        ) from None


def hexdigest(digest: bytes) -> str:
    return digest.hex()
