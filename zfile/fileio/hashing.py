"""Hashing the bytes a file already holds on disk (resume, crash recovery)."""

from __future__ import annotations

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
