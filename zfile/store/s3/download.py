"""Reading a file from the S3 backend: :class:`S3Download` and its
:class:`ObjectChunks`, made by :meth:`zfile.store.s3.S3Store.open_download`.

Bytes come from ranged GetObject requests, each of at most :data:`WINDOW`
bytes and each conditional on the ETag the entry was read with (If-Match),
so a download never mixes two versions of a name: a file replaced while
being sent fails with StoreError instead.  A response body is read as the
chunks are wanted, so a transfer holds what aiohttp buffers of one response
(tens of KiB) plus its chunk buffers, whatever the file's size.
"""

from __future__ import annotations

import contextlib
from typing import Any

from zfile.errors import ErrorCode, StoreError, ZfileError
from zfile.fileio.chunks import BufferPool
from zfile.protocol import digest as digests
from zfile.protocol.events import Entry
from zfile.protocol.names import quote_name
from zfile.store.base import ChunkStream, DownloadHandle
from zfile.store.s3.client import Bucket, error_code, s3_error

#: Bytes asked for by one ranged GET.
WINDOW = 8 << 20

_GONE = frozenset({"PreconditionFailed", "412", "NoSuchKey", "404"})


async def get_range(bucket: Bucket, key: str, name: str, start: int, stop: int, etag: str | None = None) -> Any:
    """The streaming body of bytes ``start`` to ``stop`` (exclusive) of
    ``key``, only while its ETag is ``etag`` (when given); StoreError when
    the object changed or went away."""
    q = quote_name(name)
    kw: dict[str, Any] = {"IfMatch": etag} if etag else {}
    try:
        got = await bucket.call(
            f"read {q}", "get_object", passthrough=_GONE, Key=key, Range=f"bytes={start}-{stop - 1}", **kw
        )
    except ZfileError:
        raise
    except Exception as exc:
        if error_code(exc) in ("PreconditionFailed", "412"):
            raise StoreError(f"{q} was replaced in the store while being read") from exc
        raise StoreError(f"{q} was deleted from the store while being read") from exc
    return got["Body"]


async def hash_object(bucket: Bucket, key: str, name: str, algo: str, size: int) -> bytes:
    """The ``algo`` digest of the first ``size`` bytes of ``key``, read
    window by window; StoreError when it is shorter or cannot be read."""
    hasher = digests.new_hasher(algo)
    pos = 0
    while pos < size:
        stop = min(size, pos + WINDOW)
        body = await get_range(bucket, key, name, pos, stop)
        try:
            while pos < stop:
                piece = await body.read(min(1 << 20, stop - pos))
                if not piece:
                    raise StoreError(f"{quote_name(name)} is shorter in the store than its {size} bytes")
                hasher.update(piece)
                pos += len(piece)
        except ZfileError:
            raise
        except Exception as exc:
            raise s3_error(exc, f"read {quote_name(name)}", bucket.endpoint, bucket.name) from exc
        finally:
            body.close()
    return hasher.digest()


class ObjectChunks(ChunkStream):
    """The ChunkStream of an object from ``offset`` to the entry's size
    (base.ChunkStream): one ranged GET per :data:`WINDOW`, its body read
    into the pool's buffers a chunk at a time."""

    def __init__(self, download: S3Download, offset: int, chunk: int) -> None:
        self.pool = BufferPool(chunk)
        self._download = download
        self._chunk = chunk
        self._next = offset
        self._end = download.entry.size
        self._body: Any = None
        self._body_pos = 0  # next byte the open body gives
        self._body_stop = 0

    @property
    def done(self) -> bool:
        return self._next >= self._end

    async def next(self) -> tuple[bytearray, memoryview]:
        name = self._download.entry.name
        if self.done:
            raise StoreError(f"no bytes of {quote_name(name)} are left to send")
        n = min(self._chunk, self._end - self._next)
        buf = self.pool.take()
        view = memoryview(buf)[:n]
        try:
            await self._fill(view)
        except BaseException:
            self.pool.give(buf)
            raise
        self._next += n
        return buf, view

    async def _fill(self, view: memoryview) -> None:
        d = self._download
        got = 0
        while got < len(view):
            if self._body is None:
                start = self._next + got
                self._body_stop = min(self._end, start + WINDOW)
                self._body = await get_range(d.bucket, d.key, d.entry.name, start, self._body_stop, d.etag)
                self._body_pos = start
            try:
                piece = await self._body.read(min(len(view) - got, self._body_stop - self._body_pos))
            except Exception as exc:
                self._close_body()
                raise s3_error(exc, f"read {quote_name(d.entry.name)}", d.bucket.endpoint, d.bucket.name) from exc
            if not piece:
                self._close_body()
                raise StoreError(f"{quote_name(d.entry.name)} ended early in the store")
            view[got : got + len(piece)] = piece
            got += len(piece)
            self._body_pos += len(piece)
            if self._body_pos >= self._body_stop:
                self._close_body()

    def _close_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            with contextlib.suppress(Exception):
                body.close()

    async def aclose(self) -> None:
        self._close_body()


class S3Download(DownloadHandle):
    """An object open for reading: ``entry`` and the ``etag`` it was read with."""

    def __init__(self, bucket: Bucket, key: str, entry: Entry, etag: str) -> None:
        self.entry = entry
        self.bucket = bucket
        self.key = key
        self.etag = etag
        self._closed = False

    async def read(self, offset: int, length: int) -> bytes:
        """At most ``length`` bytes from byte ``offset`` (one ranged GET);
        b"" at or past the end.  ZfileError (bad-request) for a negative
        argument; StoreError when closed, replaced or unreadable."""
        q = quote_name(self.entry.name)
        if offset < 0 or length < 0:
            raise ZfileError(f"cannot read {length} bytes at offset {offset} of {q}", code=ErrorCode.BAD_REQUEST)
        if self._closed:
            raise StoreError(f"the download of {q} is closed")
        stop = min(self.entry.size, offset + length)
        if stop <= offset:
            return b""
        body = await get_range(self.bucket, self.key, self.entry.name, offset, stop, self.etag)
        try:
            return await body.read()
        except Exception as exc:
            raise s3_error(exc, f"read {q}", self.bucket.endpoint, self.bucket.name) from exc
        finally:
            body.close()

    def reader(self, offset: int, chunk: int) -> ObjectChunks:
        """An :class:`ObjectChunks` from byte ``offset``; StoreError when closed."""
        if self._closed:
            raise StoreError(f"the download of {quote_name(self.entry.name)} is closed")
        return ObjectChunks(self, offset, chunk)

    def local_fd(self) -> None:
        """None: an object's bytes are in no local file (DownloadHandle.local_fd)."""
        return None

    async def close(self) -> None:
        self._closed = True
