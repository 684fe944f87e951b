"""The client's side of a streamed file: chunks out under the daemon's credit
(upload), chunks in under the client's own credit (download).

:class:`zfile.client.Client` opens the transfer (PUT and PUT-READY, GET and
GET-META) and finishes it (PUT-END and PUT-OK; fsync, verification and the
rename); these loops move the bytes between them, with at most one
worker-thread hop per chunk (:mod:`zfile.chunkio`).  Offsets and sizes are
bytes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from zfile.errors import LocalFileError
from zfile.fileio.chunks import ChunkReader, ShortRead, close_after, grant_step, write_chunks
from zfile.fileio.writeback import Writeback
from zfile.protocol.digest import Hasher
from zfile.protocol.events import Chunk, Credit, Event, GetMeta
from zfile.protocol.machine import State, Transfer

if TYPE_CHECKING:
    from zfile.client.client import Client, Progress

Inbox = asyncio.Queue[Event | BaseException]


async def send_file(
    client: Client,
    transfer: Transfer,
    inbox: Inbox,
    path: Path,
    st: os.stat_result,
    hasher: Hasher,
    progress: Progress,
) -> None:
    """Send the file at ``path`` from ``transfer.offset`` to ``transfer.size``
    as CHUNKs, each within the credit granted, hashing every byte sent into
    ``hasher``.  ``st`` is the file's stat when the upload began.

    Raises :class:`LocalFileError` when the file cannot be read or changed
    (size or mtime) while being sent; the client's errors for the daemon's
    answers (RemoteError, PeerTimeout, TransportError).
    """
    try:
        fd = await asyncio.to_thread(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None
    reader = ChunkReader(fd, transfer.offset, transfer.size, client.chunk_size, hasher, owns_fd=True)
    try:
        while not reader.done:
            try:
                buf, view = await reader.next()
            except ShortRead:
                raise LocalFileError(f"{path} changed while being sent (shorter than {transfer.size} bytes)") from None
            except OSError as exc:
                raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None
            # Credit is granted in bytes, so a chunk may have to go in pieces.
            trackers = []
            sent = 0
            while sent < len(view):
                client._pending(transfer, inbox)
                while transfer.credit == 0:
                    event = await client._next(transfer, inbox)
                    assert isinstance(event, Credit)
                n = min(transfer.credit, len(view) - sent)
                piece = Chunk(transfer.id, transfer.offset, view[sent : sent + n])
                trackers.append(await client._send(transfer, piece, track=True))
                sent += n
                progress(n)
                # zmq.asyncio sends rarely yield (pyzmq #1259); let receives run.
                await asyncio.sleep(0)
            # libzmq owns the buffer until the tracker says it sent it.
            reader.pool.give(buf, trackers)
        now = os.fstat(fd)
    finally:
        await reader.aclose()
    if (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise LocalFileError(f"{path} changed while being sent")


async def receive_file(
    client: Client,
    transfer: Transfer,
    inbox: Inbox,
    meta: GetMeta,
    part: Path,
    hasher: Hasher,
    progress: Progress,
) -> None:
    """Write the CHUNKs of a download into ``part`` from ``meta.offset`` (the
    file is truncated there first) until ``meta.size``, hashing them into
    ``hasher``, granting credit as they are written, and fsync it.

    Raises ``OSError`` from the file system; the client's errors for the
    daemon's answers.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (0 if meta.offset else os.O_TRUNC)
    fd = await asyncio.to_thread(_open_at, part, flags, meta.offset)
    loop = asyncio.get_running_loop()
    hop: asyncio.Future | None = None
    try:
        # Overlap disk writes with the transfer: the fsync below has only the tail left.
        writeback = Writeback(meta.offset)
        granted_end = meta.offset + client.window
        step_min = grant_step(client.window, client.chunk_size)
        while transfer.state is State.GET_RECEIVING:
            chunk = await client._next(transfer, inbox)
            assert isinstance(chunk, Chunk)
            hop = loop.run_in_executor(None, write_chunks, fd, [chunk.data], transfer.offset, hasher, writeback)
            n = await asyncio.shield(hop)  # a cancel leaves hop pending while the thread writes
            progress(n)
            new_end = min(meta.size, transfer.offset + client.window)
            step = new_end - granted_end
            if step >= step_min or (step > 0 and new_end == meta.size):
                await client._send(transfer, Credit(transfer.id, step))
                granted_end = new_end
        hop = loop.run_in_executor(None, os.fsync, fd)
        await asyncio.shield(hop)
    finally:
        close_after(hop, fd)


def _open_at(path: Path, flags: int, offset: int) -> int:
    fd = os.open(path, flags, 0o666)
    try:
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = ["receive_file", "send_file"]
