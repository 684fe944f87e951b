"""Reading a stored file: :class:`Download`, made by :meth:`zfile.store.local.LocalStore.open_download`.

Offsets and lengths are bytes.  ``OSError`` becomes NoSpace or StoreError
(:func:`zfile.store.fs.store_error`), in :meth:`Download.read` and in the
chunks of :meth:`Download.reader` alike, so a caller streaming a file
handles zfile errors only.
"""

from __future__ import annotations

import asyncio
import contextlib

from zfile.errors import ErrorCode, StoreError, ZfileError
from zfile.fileio.chunks import ChunkReader, ShortRead
from zfile.protocol.events import Entry
from zfile.protocol.names import quote_name
from zfile.store.base import DownloadHandle
from zfile.store.fs import store_error


class FileChunks(ChunkReader):
    """A :class:`~zfile.fileio.chunks.ChunkReader` of the stored file
    ``name`` whose :meth:`next` raises zfile errors only: StoreError when the
    file ended before its entry's size (it changed on disk while being
    sent), StoreError or NoSpace for a failed read."""

    def __init__(self, name: str, fd: int, offset: int, end: int, chunk: int, **kw) -> None:
        super().__init__(fd, offset, end, chunk, **kw)
        self.name = name

    async def next(self) -> tuple[bytearray, memoryview]:
        try:
            return await super().next()
        except ShortRead:
            raise StoreError(f"{quote_name(self.name)} changed on disk while being sent") from None
        except OSError as exc:
            raise store_error(exc, self.name, "read") from exc


class Download(DownloadHandle):
    """An open stored file; ``entry`` is its catalog entry."""

    def __init__(self, entry: Entry, file) -> None:
        self.entry = entry
        self._file = file
        self._lock = asyncio.Lock()  # a seek and its read must not interleave with another read's

    async def read(self, offset: int, length: int) -> bytes:
        """Return at most ``length`` bytes from byte ``offset`` of the file;
        b"" at or past the end.  ZfileError (bad-request) for a negative
        argument, StoreError when closed or when reading fails."""
        q = quote_name(self.entry.name)
        if offset < 0 or length < 0:
            raise ZfileError(f"cannot read {length} bytes at offset {offset} of {q}", code=ErrorCode.BAD_REQUEST)
        async with self._lock:
            if self._file is None:
                raise StoreError(f"the download of {q} is closed")
            try:
                await self._file.seek(offset)
                return await self._file.read(length)
            except OSError as exc:
                raise store_error(exc, self.entry.name, "read") from exc

    def reader(self, offset: int, chunk: int) -> FileChunks:
        """A :class:`FileChunks` of the file from byte ``offset`` to the
        entry's size, in chunks of ``chunk`` bytes (read in the event loop
        when cached, else in a worker-thread hop); :meth:`close` this
        download only after the reader's ``aclose``.  StoreError when the
        download is closed."""
        if self._file is None:
            raise StoreError(f"the download of {quote_name(self.entry.name)} is closed")
        # Never waits for pool room: buffers held past the limit mean a peer
        # that stopped reading, which the paced send ends after idle_timeout;
        # waiting here would only put that off.
        return FileChunks(self.entry.name, self._file.fileno(), offset, self.entry.size, chunk, room_timeout=0)

    def local_fd(self) -> int | None:
        """The open file's descriptor (DownloadHandle.local_fd); None once closed."""
        return None if self._file is None else self._file.fileno()

    async def close(self) -> None:
        """Close the file; a no-op when already closed."""
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                await file.close()
