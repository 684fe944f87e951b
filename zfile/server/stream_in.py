"""An upload whose size is known only at its end (PUT-STREAM, docs/protocol.md):
the daemon's side.

The bytes arrive under credit, as for a PUT, and are spooled to an unnamed
temporary file (``TMPDIR``, gone with its descriptor whatever happens);
once PUT-END gives the size and digest, the spool is stored through the
ordinary :meth:`~zfile.store.base.Store.begin_upload` and commit, which
verify the size and digest and publish atomically.  So the store's rules
apply unchanged (name, limits, no-clobber, free space, atomic commit), at
the price of writing the bytes twice.  Memory stays within one chunk; the
spool within ``max_file_size``.  There is no resume: a stream that stops
is dropped.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from typing import BinaryIO

from zfile.errors import ErrorCode, Exists, TooLarge, ZfileError
from zfile.protocol import digest as digests
from zfile.protocol.credit import CreditWindow
from zfile.protocol.events import Chunk, Credit, Entry, Event, PutEnd, PutReady, PutStream
from zfile.protocol.names import check_name, quote_name
from zfile.store import Store


async def receive_stream(
    put: PutStream,
    store: Store,
    events: asyncio.Queue[Event],
    send: Callable[[Event], Awaitable[object]],
    *,
    window: int,
    chunk_size: int,
    max_file_size: int,
    max_name_bytes: int,
    peer: str,
) -> Entry:
    """Take the stream ``put`` opened (its CHUNKs and PUT-END from
    ``events``, replies through ``send``), store it and return its entry.

    Refuses before any byte: a bad name (BadName), an unknown algorithm
    (bad-request), a stored name when ``clobber`` is off (Exists).  TooLarge
    once the stream passes ``max_file_size`` bytes; the store's errors at
    commit (IntegrityError for a digest that does not match, NoSpace...).
    The spool is closed, and an unfinished upload aborted, either way."""
    check_name(put.name, max_name_bytes)
    digests.new_hasher(put.algo)  # an unknown algorithm is refused before any byte
    if not put.clobber:
        try:
            await store.lookup(put.name)
        except ZfileError as exc:
            if exc.code is not ErrorCode.NOT_FOUND:
                raise
        else:
            raise Exists(f"{quote_name(put.name)} already exists in the store")
    spool: BinaryIO = await asyncio.to_thread(tempfile.TemporaryFile)
    upload = None
    try:
        credit = CreditWindow(0, None, window, chunk_size)
        await send(PutReady(put.id, f"stream-{uuid.uuid4().hex[:16]}", 0, credit.initial))
        written = 0
        while True:
            event = await events.get()
            if isinstance(event, PutEnd):
                break
            assert isinstance(event, Chunk)
            if written + len(event.data) > max_file_size:
                raise TooLarge(f"{quote_name(put.name)} passed {max_file_size} bytes, the most the store accepts")
            await asyncio.to_thread(spool.write, event.data)
            written += len(event.data)
            if step := credit.grant(written):
                await send(Credit(put.id, step))
        assert event.size == written  # the protocol checked it
        upload = await store.begin_upload(
            name=put.name,
            size=written,
            mtime_ns=put.mtime_ns,
            mode=put.mode,
            algo=put.algo,
            clobber=put.clobber,
            peer=peer,
        )
        offset = upload.offset  # a partial of the same name, size and mtime: its bytes are kept
        await asyncio.to_thread(spool.seek, offset)
        while offset < written:
            data = await asyncio.to_thread(spool.read, min(chunk_size, written - offset))
            if not data:
                raise ZfileError(f"the spool of {quote_name(put.name)} ended early", code=ErrorCode.INTERNAL)
            await upload.write(offset, data)
            offset += len(data)
        entry = await upload.commit(event.digest)
        upload = None
        return entry
    finally:
        if upload is not None:
            await upload.abort()
        await asyncio.to_thread(spool.close)


__all__ = ["receive_stream"]
