"""Bodies of unknown size, spooled to an anonymous temporary file first,
because the store wants a file's size when its upload begins: a chunked PUT
(RFC 9112 §7.1) and each file of a form.  Memory stays at a chunk or two;
the disk holds the copy until the upload has streamed from it.

The temporary file goes in ``$TMPDIR``, else ``/var/tmp`` (kept on disk by
convention, where ``/tmp`` may be memory), else the system's default.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import IO

from zfile.errors import TooLarge

#: Bytes gathered before each write to, and read at once from, the spool file.
CHUNK = 1 << 20


def spool_dir() -> str | None:
    """Where spool files go (module docstring); None: tempfile's default."""
    if os.environ.get("TMPDIR"):
        return None
    return "/var/tmp" if os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK | os.X_OK) else None


async def open_spool() -> IO[bytes]:
    """A new anonymous temporary file (gone from the disk once closed)."""
    return await asyncio.to_thread(tempfile.TemporaryFile, dir=spool_dir())


async def spool(
    chunks: AsyncIterator[bytes], file: IO[bytes], *, limit: int, what: str, counted: Callable[[int], None]
) -> int:
    """Copy ``chunks`` into ``file`` and rewind it; return the number of
    bytes.  TooLarge once they pass ``limit`` bytes (``what`` names the body
    in its message); ``counted(n)`` is told of every chunk of ``n`` bytes."""
    size = 0
    pending = bytearray()
    async for chunk in chunks:
        size += len(chunk)
        counted(len(chunk))
        if size > limit:
            raise TooLarge(f"{what} is over the store's limit of {limit} bytes")
        pending += chunk
        if len(pending) >= CHUNK:
            await asyncio.to_thread(file.write, pending)
            pending = bytearray()
    if pending:
        await asyncio.to_thread(file.write, pending)
    await asyncio.to_thread(file.seek, 0)
    return size


async def unspool(file: IO[bytes]) -> AsyncIterator[bytes]:
    """The bytes of ``file`` from where it stands, in chunks of :data:`CHUNK`."""
    while chunk := await asyncio.to_thread(file.read, CHUNK):
        yield chunk
