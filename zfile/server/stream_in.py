"""An upload whose size is known only at its end (PUT-STREAM, docs/protocol.md):
the daemon's side.

The bytes arrive under credit, as for a PUT, and go straight into the
store's :class:`~zfile.store.base.StreamHandle` (a partial file, a
multipart upload), hashed on the way, so they are written once; PUT-END
gives the size and digest, and the store checks both and publishes
atomically, as for any PUT.  The store's rules apply unchanged (name,
limits, no-clobber, free space, atomic commit).  Memory stays within the
credit window.  There is no resume: a stream that stops is dropped, its
bytes with it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from zfile.errors import ErrorCode, Exists, ZfileError
from zfile.protocol import digest as digests
from zfile.protocol.credit import CreditWindow
from zfile.protocol.events import Chunk, Credit, Entry, Event, PutEnd, PutReady, PutStream
from zfile.protocol.names import check_name, quote_name
from zfile.server.keepalive import keep_alive
from zfile.store import Store


async def receive_stream(
    put: PutStream,
    store: Store,
    events: asyncio.Queue[Event],
    send: Callable[[Event], Awaitable[object]],
    *,
    window: Callable[[], int],
    chunk_size: int,
    max_name_bytes: int,
    peer: str,
) -> Entry:
    """Take the stream ``put`` opened (its CHUNKs and PUT-END from
    ``events``, replies through ``send``), store it and return its entry.
    ``window()`` is the credit window (bytes) this upload may hold unwritten
    at the moment (it shrinks while many uploads run).

    Refuses before any byte: a bad name (BadName), an unknown algorithm
    (bad-request), a stored name when ``clobber`` is off (Exists).  TooLarge
    once the stream passes the store's ``max_file_size`` bytes; the store's
    errors as they come (NoSpace from a write; IntegrityError for a size or
    digest that does not match at the commit).  The upload is aborted
    unless it was committed, whatever ends it (cancellation too)."""
    check_name(put.name, max_name_bytes)
    digests.new_hasher(put.algo)  # an unknown algorithm is refused before any byte
    if not put.clobber:
        # Asked of the catalog first, so that a refusal names the file as stored.
        try:
            await store.lookup(put.name)
        except ZfileError as exc:
            if exc.code is not ErrorCode.NOT_FOUND:
                raise
        else:
            raise Exists(f"{quote_name(put.name)} already exists in the store")
    upload = await store.begin_stream(
        name=put.name, mtime_ns=put.mtime_ns, mode=put.mode, algo=put.algo, clobber=put.clobber, peer=peer
    )
    committed = False
    try:
        credit = CreditWindow(0, None, window(), chunk_size)
        await send(PutReady(put.id, f"stream-{uuid.uuid4().hex[:16]}", 0, credit.initial))
        while True:
            event = await events.get()
            if isinstance(event, PutEnd):
                break
            assert isinstance(event, Chunk)
            await upload.write(event.offset, event.data)
            # Credit only for bytes written: memory stays within the window.
            if step := credit.grant(upload.offset, window()):
                await send(Credit(put.id, step))
        assert event.size is not None  # the protocol checked it
        # The commit may outlast the client's timeout (keepalive.py).
        entry = await keep_alive(upload.commit(event.digest, event.size), lambda: send(Credit(put.id, 1)))
        committed = True
        return entry
    finally:
        if not committed:
            await upload.abort()


__all__ = ["receive_stream"]
