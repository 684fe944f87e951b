"""Hashing the bytes a file already holds on disk (resume, crash recovery)."""

from __future__ import annotations

import os

from zfile.protocol.digest import DEFAULT_ALGO, Hasher, new_hasher


def hash_file_prefix(path: str, length: int, algo: str = DEFAULT_ALGO, block: int = 1 << 20) -> Hasher:
    """Hash the first ``length`` bytes of the file at ``path``.

    Only resume uses this: it primes the hasher with the bytes a partial file
    already holds.  Raises ``OSError`` from the file system, and ``EOFError``
    when the file is shorter than ``length``.
    """
    hasher = new_hasher(algo)
    remaining = length
    with open(path, "rb", buffering=0) as f:
        while remaining:
            data = f.read(min(block, remaining))
            if not data:
                raise EOFError(f"{path} holds fewer than {length} bytes")
            hasher.update(data)
            remaining -= len(data)
    return hasher


def whole_file_digest(
    path: str | os.PathLike[str], size: int, algo: str = DEFAULT_ALGO, block: int = 1 << 20
) -> bytes | None:
    """The digest of the file at ``path`` when it holds exactly ``size``
    bytes, else None (it is shorter or longer).

    The quick check's ``-c`` (rsync's ``--checksum``) calls it for every file
    of a tree whose size matches the other side's, so a file of less than
    ``block`` bytes costs one ``open(2)``, one ``read(2)`` of one byte more
    than ``size`` (a longer file shows without a ``stat(2)``) and a
    ``close(2)``, no Python file object.  Raises ``OSError`` from the file
    system.
    """
    hasher = new_hasher(algo)
    total = 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            # One byte more than is left: a longer file shows without a stat.
            want = min(block, size - total + 1)
            data = os.read(fd, want)
            if not data:
                break
            total += len(data)
            if total > size:
                return None
            hasher.update(data)
            if total == size and len(data) < want:
                break  # short of the byte more asked for: the end, with no read(2) to see it
    finally:
        os.close(fd)
    return hasher.digest() if total == size else None
