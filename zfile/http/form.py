"""``POST /files/<prefix>/``: files from a ``multipart/form-data`` form
(RFC 7578), such as the browser page's upload form, stored under the prefix.

Each file part is read with aiohttp's multipart reader in chunks and spooled
to an anonymous temporary file (:mod:`zfile.http.spool`), because a form does
not say a part's size before its bytes; then it streams from there into the
store like a PUT (:func:`zfile.http.files.store_stream`).
Memory stays at a chunk or two whatever the size.  Files are stored in the
order of the form; the first that fails ends the request with its error,
those before it stay stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web

from zfile.http.files import BYTES, WRITE_CHUNK, files_url, paced, store_stream
from zfile.http.spool import open_spool, spool, unspool
from zfile.protocol.entries import entry_json
from zfile.protocol.names import check_name
from zfile.store import Store


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(WRITE_CHUNK):
        yield chunk


async def post_form(
    store: Store,
    request: web.Request,
    prefix: str,
    *,
    max_file_size: int,
    max_name_bytes: int,
    idle: float | None = None,
) -> web.Response:
    """Store every file of the form under ``prefix`` (each part's file name,
    less any directory a client put in it).  A browser (``Accept: text/html``)
    gets 303 See Other back to the directory page; other clients 201 with a
    JSON array of the entries.  415 for a body that is not multipart/form-data,
    400 for a form without a file, the store's refusals as in a PUT, 408 when
    no byte comes for ``idle`` seconds."""
    if request.content_type != "multipart/form-data":
        raise web.HTTPUnsupportedMediaType(text="POST a multipart/form-data form with file fields\n")
    reader = await request.multipart()
    entries = []
    while (part := await reader.next()) is not None:
        filename = part.filename if isinstance(part, BodyPartReader) else None
        # Browsers send the base name; some older ones and hand-made forms a path.
        base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
        if not base:
            await part.release()  # a plain field, or a file input left empty
            continue
        name = check_name(prefix + base, max_name_bytes)
        with await open_spool() as file:

            def count(n: int) -> None:
                request[BYTES] += n

            what = repr(part.filename)
            size = await spool(paced(_chunks(part), idle), file, limit=max_file_size, what=what, counted=count)
            entries.append(
                await store_stream(store, name=name, size=size, chunks=unspool(file), peer=request.remote or "")
            )
    if not entries:
        raise web.HTTPBadRequest(text="the form holds no file\n")
    if "text/html" in request.headers.get("Accept", ""):
        raise web.HTTPSeeOther(files_url(prefix))
    return web.json_response([entry_json(e) for e in entries], status=201)
