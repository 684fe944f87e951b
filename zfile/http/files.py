"""One stored file over HTTP: GET and HEAD (RFC 9110 §9.3.1-2, with the
validators, conditionals and single byte ranges of :mod:`zfile.http.conditional`)
and PUT (§9.3.4), all streamed through the :class:`~zfile.store.Store` interface.

A GET reads from one :class:`~zfile.store.DownloadHandle`, opened before the
first byte goes out: the store pairs it with one version's bytes, so a file
replaced meanwhile is served whole from the old version.  A PUT streams the
body into an :class:`~zfile.store.UploadHandle`, which hashes it as it
writes (:meth:`~zfile.store.UploadHandle.written_digest`: the body is
hashed once), and commits only a complete body whose digest matches
``X-Zfile-Digest`` when given; otherwise the upload is suspended and
nothing appears under the name.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

from aiohttp import web

from zfile.errors import Exists, IntegrityError, StoreError
from zfile.http.conditional import Unsatisfiable, byte_range, etag, http_date, last_modified, precondition
from zfile.http.spool import open_spool, spool, unspool
from zfile.protocol import digest as digests
from zfile.protocol.digest import Hasher
from zfile.protocol.entries import entry_json
from zfile.protocol.events import Entry
from zfile.store import Store, UploadHandle

#: Bytes read from the store per chunk of a response body.
READ_CHUNK = 256 * 1024
#: Bytes of a response body one sendfile(2) call may send, each within the idle timeout.
SENDFILE_PIECE = 1 << 20
#: Bytes of a request body gathered before one store write (fewer, larger writes).
WRITE_CHUNK = 1 << 20
#: Mode of a file stored over HTTP, which carries none.
FILE_MODE = 0o644
#: Body bytes a request sent or received so far, for its log line.
BYTES = web.RequestKey("zfile.bytes", int)
#: Set once a response's head has gone out: an error can then only cut the body short.
STARTED = web.RequestKey("zfile.started", bool)


def files_url(name: str) -> str:
    """The path of a stored name (or prefix) under ``/files/``, percent-encoded."""
    return "/files/" + quote(name, safe="/")


def _disposition(name: str) -> str:
    # RFC 6266 §4.3: an ASCII fallback, and the exact name in RFC 8187's filename*.
    base = name.rsplit("/", 1)[-1]
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in base)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(base, safe='')}"


def validators(entry: Entry) -> dict[str, str]:
    """``ETag`` and ``Last-Modified`` of ``entry``."""
    return {"ETag": etag(entry), "Last-Modified": http_date(last_modified(entry))}


async def paced(chunks: AsyncIterator[bytes], idle: float | None) -> AsyncIterator[bytes]:
    """``chunks``, each of which must come within ``idle`` seconds (None: no
    limit); HTTP 408 Request Timeout when one does not."""
    it = aiter(chunks)
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await anext(it)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise web.HTTPRequestTimeout(text=f"no byte of the body came for {idle:g} s\n") from None
        yield chunk


async def get_file(store: Store, request: web.Request, name: str, idle: float | None = None) -> web.StreamResponse:
    """Answer a GET or HEAD of ``name``: 200 or 206 with the bytes (none for
    HEAD), 304 or 412 for a conditional request, 416 for a range past the
    end; the store's NotFound and BadName propagate.  A client that takes
    none of the body for ``idle`` seconds is cut off (ConnectionAbortedError)."""
    download = await store.open_download(name)
    try:
        entry = download.entry
        headers = validators(entry)
        status = precondition(request.method, request.headers, entry)
        if status == 304:
            return web.Response(status=304, headers=headers)
        if status == 412:
            raise web.HTTPPreconditionFailed(text="the precondition does not hold for this file\n")
        span = None
        if request.method == "GET":
            try:
                span = byte_range(request.headers, entry)
            except Unsatisfiable:
                headers["Content-Range"] = f"bytes */{entry.size}"
                raise web.HTTPRequestRangeNotSatisfiable(headers=headers, text="the range starts past the end\n")
        start, length = (span.start, span.length) if span else (0, entry.size)
        headers |= {
            "Accept-Ranges": "bytes",
            "Content-Disposition": _disposition(name),
            "Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream",
            "X-Zfile-Digest": f"{entry.algo}={entry.digest.hex()}",
        }
        if span:
            headers["Content-Range"] = span.content_range()
        response = web.StreamResponse(status=206 if span else 200, headers=headers)
        response.content_length = length
        await response.prepare(request)
        request[STARTED] = True
        if request.method == "GET" and length:
            fd = download.local_fd()
            transport = request.transport
            if fd is not None and transport is not None and transport.get_extra_info("sslcontext") is None:
                await _sendfile(fd, transport, start, length, request, idle)
            else:
                await _send(download.reader(start, READ_CHUNK), response, length, request, idle)
        await response.write_eof()
        return response
    finally:
        await download.close()


async def _sendfile(
    fd: int, transport: asyncio.Transport, start: int, length: int, request: web.Request, idle: float | None
) -> None:
    """Send ``length`` bytes of the file ``fd`` from byte ``start`` with
    sendfile(2) (``loop.sendfile``): the page cache's pages go to the socket
    uncopied, as nginx sends a file; a read and a write per chunk cost the
    daemon about five times the CPU (docs/performance.md, "The HTTP front").  Pieces of :data:`SENDFILE_PIECE`
    bytes, each within ``idle`` seconds.  StoreError when the file is
    shorter than that; the connection's errors as they come."""
    loop = asyncio.get_running_loop()
    # A file object of its own: loop.sendfile moves its offset, which the
    # download's own reads must not see.
    with os.fdopen(os.dup(fd), "rb", buffering=0) as file:
        sent = 0
        while sent < length:
            n = min(SENDFILE_PIECE, length - sent)
            try:
                async with asyncio.timeout(idle):
                    done = await loop.sendfile(transport, file, start + sent, n)
            except TimeoutError:
                # Half a body on a connection kept open would hang the client:
                # end the connection as a cut-off write would have.
                transport.close()
                raise ConnectionAbortedError(f"the client took no bytes for {idle:g} s") from None
            if not done:
                raise StoreError(f"the stored file ended {length - sent} bytes early: it changed on disk")
            sent += done
            request[BYTES] += done


async def _send(stream, response: web.StreamResponse, length: int, request: web.Request, idle: float | None) -> None:
    """Write ``length`` bytes of ``stream`` to ``response``, chunk by chunk,
    each within ``idle`` seconds."""
    try:
        left = length
        while left > 0:
            # The buffer is not handed back to the stream's pool: the transport
            # may keep a view of it after write() returns (Python >= 3.12 queues
            # memoryviews uncopied), so reusing it could corrupt bytes in flight.
            # The pool belongs to this stream alone, so nothing else waits on it.
            _, view = await stream.next()
            piece = view[:left]
            try:
                async with asyncio.timeout(idle):
                    await response.write(piece)  # waits while the client's socket buffer is full
            except TimeoutError:
                raise ConnectionAbortedError(f"the client took no bytes for {idle:g} s") from None
            left -= len(piece)
            request[BYTES] += len(piece)
    finally:
        await stream.aclose()


def parse_digest(header: str | None) -> bytes | None:
    """The digest of ``X-Zfile-Digest: blake3=<hex>``, or None when absent;
    HTTP 400 for another algorithm or a malformed value."""
    if header is None:
        return None
    algo, _, value = header.strip().partition("=")
    if algo.strip().lower() != digests.DEFAULT_ALGO:
        raise web.HTTPBadRequest(text=f"X-Zfile-Digest must be {digests.DEFAULT_ALGO}=<hex>\n")
    try:
        return bytes.fromhex(value.strip())
    except ValueError:
        raise web.HTTPBadRequest(text="X-Zfile-Digest holds no hex digest\n") from None


async def store_stream(
    store: Store,
    *,
    name: str,
    size: int,
    chunks: AsyncIterator[bytes],
    peer: str,
    clobber: bool = True,
    expected: bytes | None = None,
    counted: web.Request | None = None,
) -> Entry:
    """Stream exactly ``size`` bytes of ``chunks`` into the store as ``name``
    and return its entry.

    Raises IntegrityError (HTTP 422) when the bytes' BLAKE3 digest is not
    ``expected``, or when ``chunks`` holds more or fewer than ``size`` bytes;
    the store's refusals (BadName, Exists, TooLarge, NoSpace, Busy) as they
    come.  Whatever stops the upload before its commit (an error, the client
    going away, cancellation) suspends it: nothing reaches ``name`` and the
    partial is released.  ``counted[BYTES]`` grows by the bytes received.
    """
    upload = await store.begin_upload(
        name=name,
        size=size,
        mtime_ns=time.time_ns(),
        mode=FILE_MODE,
        algo=digests.DEFAULT_ALGO,
        clobber=clobber,
        peer=peer,
    )
    committed = False
    try:
        # A partial the store resumed is not this body's: hashed here, its commit is refused.
        hasher = digests.new_hasher(digests.DEFAULT_ALGO) if upload.offset else None
        pending = bytearray()
        async for chunk in chunks:
            if counted is not None:
                counted[BYTES] += len(chunk)
            if upload.offset + len(pending) + len(chunk) > size:
                raise IntegrityError(f"the body of {name!r} runs past its {size} bytes")
            pending += chunk
            if len(pending) >= WRITE_CHUNK:
                await _write(upload, pending, hasher)
                pending = bytearray()  # the store may still hold the last one
        if pending:
            await _write(upload, pending, hasher)
        if upload.offset != size:
            raise IntegrityError(f"the body of {name!r} ended after {upload.offset} of {size} bytes")
        digest = upload.written_digest() if hasher is None else hasher.digest()
        if digest is None:
            raise StoreError(f"the store cannot tell the digest of {name!r}")
        if expected is not None and digest != expected:
            await upload.abort()
            raise IntegrityError(
                f"the body of {name!r} has digest {digests.DEFAULT_ALGO}={digest.hex()}, not {expected.hex()}"
            )
        entry = await upload.commit(digest)
        committed = True
        return entry
    finally:
        if not committed:
            await upload.suspend()


async def _write(upload: UploadHandle, data: bytearray, hasher: Hasher | None) -> None:
    if hasher is not None:
        hasher.update(data)
    await upload.write(upload.offset, data)


async def put_file(
    store: Store, request: web.Request, name: str, *, max_file_size: int, idle: float | None = None
) -> web.Response:
    """Answer a PUT of ``name``: 201 with the entry as JSON (``zfile ls
    --json``'s fields).  The size is Content-Length's; a chunked body
    without one is spooled first (:mod:`zfile.http.spool`; 413 past
    ``max_file_size`` bytes).  412 for ``If-None-Match: *`` when the name
    exists (RFC 9110 §13.1.2), 422 for a digest mismatch, 408 when no byte
    of the body comes for ``idle`` seconds."""
    expected = parse_digest(request.headers.get("X-Zfile-Digest"))
    clobber = request.headers.get("If-None-Match", "").strip() != "*"
    body = paced(request.content.iter_chunked(WRITE_CHUNK), idle)
    peer = request.remote or ""
    try:
        if request.content_length is not None:
            entry = await store_stream(
                store,
                name=name,
                size=request.content_length,
                chunks=body,
                peer=peer,
                clobber=clobber,
                expected=expected,
                counted=request,
            )
        else:
            with await open_spool() as file:

                def count(n: int) -> None:
                    request[BYTES] += n

                size = await spool(body, file, limit=max_file_size, what=f"the body of {name!r}", counted=count)
                entry = await store_stream(
                    store,
                    name=name,
                    size=size,
                    chunks=unspool(file),
                    peer=peer,
                    clobber=clobber,
                    expected=expected,
                )
    except Exists:
        if clobber:
            raise
        raise web.HTTPPreconditionFailed(text=f"{name!r} exists (If-None-Match: *)\n") from None
    headers = validators(entry) | {"Location": files_url(name)}
    return web.json_response(entry_json(entry), status=201, headers=headers)
