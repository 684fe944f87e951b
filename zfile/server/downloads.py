"""The daemon's side of a download: GET (GET-META, then CHUNKs under the
peer's credit, zero-copy from the store's read buffers) and GET-MANY (small
files in one reply), each run as its session's task by
:class:`zfile.server.sessions.Transfers`, which replies, logs and ends
the session.  Offsets and sizes are bytes."""

from __future__ import annotations

import asyncio
import time

from zfile.protocol.events import Get, GetMany, GetMeta
from zfile.server import getmany
from zfile.server.session import Session, Table
from zfile.store import ChunkStream


async def download(transfers: Table, session: Session, get: Get) -> None:
    """Serve a GET: GET-META (with the offset it resumes from when the
    peer's digest is the stored file's), then the file's bytes as CHUNKs
    under the peer's credit; one log line either way."""
    began = time.monotonic()
    exc: BaseException | None = None
    opened = None
    try:
        opened = await transfers.store.open_download(get.name)
        entry = opened.entry
        resume = get.offset if get.digest == entry.digest and get.offset <= entry.size else 0
        await transfers.send_in(
            session,
            GetMeta(
                get.id,
                entry.name,
                entry.size,
                entry.mtime_ns,
                entry.mode,
                entry.algo,
                entry.digest,
                resume,
            ),
        )
        await send_chunks(transfers, session, opened.reader(resume, transfers.config.chunk_size))
        transfers.log_transfer(session, "out", entry.size - resume, began, entry.digest, "ok")
    except asyncio.CancelledError:
        raise
    except Exception as e:
        exc = e
        transfers.log_transfer(session, "out", 0, began, b"", f"failed: {e}")
    finally:
        if opened is not None:
            await opened.close()
        transfers.finish(session, exc)


async def send_chunks(transfers: Table, session: Session, reader: ChunkStream) -> None:
    """Send what ``reader`` reads as CHUNKs, each within the credit the
    peer granted; the file's bytes from the transfer's offset to its size.
    StoreError when the file got shorter meanwhile, or cannot be read."""
    t = session.transfer
    try:
        while not reader.done:
            buf, view = await reader.next()
            trackers = []
            sent = 0
            while sent < len(view):
                chunk = t.next_chunk(view[sent:])
                if chunk is None:
                    session.credit_arrived.clear()
                    await session.credit_arrived.wait()
                    continue
                trackers.append(await transfers.send_in(session, chunk, track=True))
                sent += len(chunk.data)
            # libzmq owns the buffer until the tracker says it sent it.
            reader.pool.give(buf, trackers)
    finally:
        await reader.aclose()


async def get_many(transfers: Table, session: Session, req: GetMany) -> None:
    """Serve a GET-MANY: the small files asked for, in one reply (:mod:`zfile.server.getmany`)."""

    async def work() -> tuple[int, bytes, str]:
        reply = await getmany.read_many(transfers.store, req)
        await transfers.send_in(session, reply)
        return reply.size, b"", getmany.result(reply)

    await transfers.logged(session, work, "out")


__all__ = ["download", "get_many", "send_chunks"]
