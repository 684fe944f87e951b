"""The daemon's side of a download: GET (GET-META, then CHUNKs under the
peer's credit, zero-copy from the store's read buffers) and GET-MANY (small
files in one reply), each run as its session's task by
:class:`zfile.server.sessions.Transfers`, which replies, logs and ends
the session.  Offsets and sizes are bytes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from zfile.fileio.chunks import Tracker
from zfile.protocol.events import Event, Get, GetMany, GetMeta
from zfile.server import getmany
from zfile.server.config import ServerConfig
from zfile.server.session import Session
from zfile.store import ChunkStream, Store


class Transfers(Protocol):
    """What a download needs of the session table (zfile.server.sessions.Transfers)."""

    config: ServerConfig
    store: Store

    async def send_in(self, session: Session, event: Event, *, track: bool = False) -> Tracker | None: ...

    def log_transfer(self, session: Session, direction: str, nbytes: int, began: float, digest: bytes, result: str): ...

    def finish(self, session: Session, exc: BaseException | None) -> None: ...

    async def logged(
        self, session: Session, work: Callable[[], Awaitable[tuple[int, bytes, str]]], direction: str = "in"
    ) -> None: ...


async def download(transfers: Transfers, session: Session, get: Get) -> None:
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


async def send_chunks(transfers: Transfers, session: Session, reader: ChunkStream) -> None:
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


async def get_many(transfers: Transfers, session: Session, req: GetMany) -> None:
    """Serve a GET-MANY: the small files asked for, in one reply (:mod:`zfile.server.getmany`)."""

    async def work() -> tuple[int, bytes, str]:
        reply = await getmany.read_many(transfers.store, req)
        await transfers.send_in(session, reply)
        return reply.size, b"", getmany.result(reply)

    await transfers.logged(session, work, "out")


__all__ = ["Transfers", "download", "get_many", "send_chunks"]
