"""The client's side of a streamed file: chunks out under the daemon's credit
(upload), chunks in under the client's own credit (download).

:class:`zfile.client.Client` opens the transfer (PUT and PUT-READY, GET and
GET-META) and finishes it (PUT-END and PUT-OK; fsync, verification and the
rename); these loops move the bytes between them over the transfer's
:class:`~zfile.client.channel.Channel`: an upload with at most one
worker-thread hop per chunk (:mod:`zfile.fileio.chunks`), a download through
one writer thread per file (:mod:`zfile.fileio.writer`).  Where a chunk is
cut and when credit is granted is decided by :mod:`zfile.protocol.credit`.
Offsets and sizes are bytes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from zfile.client.channel import Channel, Progress
from zfile.client.pacing import TokenBucket
from zfile.errors import LocalFileError
from zfile.fileio.chunks import ChunkReader, ShortRead, close_after
from zfile.fileio.writeback import Writeback
from zfile.fileio.writer import ChunkWriter
from zfile.protocol.credit import CreditWindow, next_piece
from zfile.protocol.digest import Hasher
from zfile.protocol.events import Chunk, Credit, Event, GetMeta
from zfile.protocol.machine import State


async def send_file(
    channel: Channel,
    path: str | os.PathLike[str],
    st: os.stat_result,
    chunk_size: int,
    hasher: Hasher,
    progress: Progress,
    pacer: TokenBucket | None = None,
    aside: Callable[[Event], None] | None = None,
) -> None:
    """Send the file at ``path`` from the transfer's offset to its size as
    CHUNKs of at most ``chunk_size`` bytes, each within the credit granted,
    hashing every byte sent into ``hasher``.  ``channel``'s transfer is past
    PUT-READY; ``st`` is the file's stat when the upload began.  With a
    ``pacer`` each piece is at most its quantum and waits for its tokens.
    Events other than CREDIT that arrive meanwhile go to ``aside`` (a chain
    upload's CHAIN-RESULTs); without it, only CREDIT may arrive.

    Raises :class:`LocalFileError` when the file cannot be read or changed
    (size or mtime) while being sent; :meth:`Channel.next`'s errors for the
    daemon's answers (RemoteError, PeerTimeout, TransportError).
    """
    transfer = channel.transfer
    try:
        fd = await asyncio.to_thread(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None
    reader = ChunkReader(fd, transfer.offset, transfer.size, chunk_size, hasher, owns_fd=True)
    try:
        while not reader.done:
            try:
                buf, view = await reader.next()
            except ShortRead:
                raise LocalFileError(f"{path} changed while being sent (shorter than {transfer.size} bytes)") from None
            except OSError as exc:
                raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None
            trackers = await send_view(channel, view, progress, pacer, aside)
            # libzmq owns the buffer until the tracker says it sent it.
            reader.pool.give(buf, trackers)
        now = os.fstat(fd)
    finally:
        await reader.aclose()
    if (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise LocalFileError(f"{path} changed while being sent")


async def send_view(
    channel: Channel,
    view: memoryview,
    progress: Progress,
    pacer: TokenBucket | None = None,
    aside: Callable[[Event], None] | None = None,
) -> list:
    """Send ``view``, the upload's next bytes from the transfer's offset, as
    CHUNKs each within the credit granted (credit is granted in bytes, so a
    buffer may go in pieces), waiting for CREDIT when there is none; return
    the pieces' send trackers (libzmq owns ``view``'s buffer until they are
    done).  ``pacer`` and ``aside`` as for :func:`send_file`.  Raises
    :meth:`Channel.next`'s and :meth:`Channel.send`'s errors."""
    transfer = channel.transfer
    trackers = []
    sent = 0
    while sent < len(view):
        channel.pending(aside)
        while (n := next_piece(transfer.credit, len(view) - sent)) == 0:
            event = await channel.next()
            if aside is not None and not isinstance(event, Credit):
                aside(event)
                continue
            assert isinstance(event, Credit)
        if pacer is not None:
            n = pacer.piece(n)
            await pacer.take(n)
        piece = Chunk(transfer.id, transfer.offset, view[sent : sent + n])
        trackers.append(await channel.send(piece, track=True))
        sent += n
        progress(n)
        # zmq.asyncio sends rarely yield (pyzmq #1259); let receives run.
        await asyncio.sleep(0)
    return trackers


async def receive_file(
    channel: Channel,
    meta: GetMeta,
    part: Path,
    window: int,
    chunk_size: int,
    hasher: Hasher,
    progress: Progress,
    pacer: TokenBucket | None = None,
) -> None:
    """Write the CHUNKs of a download into ``part`` from ``meta.offset`` (the
    file is truncated there first) until ``meta.size``, hashing them into
    ``hasher``, granting credit as they are written, and fsync it.

    ``channel``'s transfer is past GET-META, its GET having granted
    ``window`` bytes; credit keeps about ``window`` bytes ahead of what is
    written, granted in steps of at least ``chunk_size`` bytes
    (:class:`~zfile.protocol.credit.CreditWindow`); with a ``pacer`` each
    chunk's tokens are taken before more credit is granted.  Raises
    ``OSError`` from the file system; :meth:`Channel.next`'s errors for the
    daemon's answers.  Once it has raised (but for a cancellation, which
    does not wait), nothing writes ``part`` any more.
    """
    transfer = channel.transfer
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (0 if meta.offset else os.O_TRUNC)
    fd = await asyncio.to_thread(_open_at, part, flags, meta.offset)
    # One writer thread for the whole file, fed without waiting: the loop
    # goes back to the socket while a chunk is written (zfile/fileio/writer.py).
    # Writeback overlaps the transfer, so the fsync has only the tail left.
    try:
        writer = ChunkWriter(fd, meta.offset, hasher, Writeback(meta.offset))
    except BaseException:  # no thread to start: nothing else holds fd
        os.close(fd)
        raise
    try:
        credit = CreditWindow(meta.offset, meta.size, window, chunk_size)
        reported = meta.offset
        while transfer.state is State.GET_RECEIVING:
            due = credit.due_at()
            if transfer.offset >= credit.granted_end and due is not None:
                # The daemon has spent its credit: nothing comes until the writer frees some.
                await writer.reach(due)
            else:
                chunk = await channel.next()
                assert isinstance(chunk, Chunk)
                writer.feed(chunk.data)
                if pacer is not None:
                    await pacer.take(len(chunk.data))
            if writer.written > reported:
                progress(writer.written - reported)
                reported = writer.written
            step = credit.grant(writer.written)
            if step:
                await channel.send(Credit(transfer.id, step))
        await writer.finish()
        progress(writer.written - reported)
    except Exception:
        # The write in progress lands before the error is raised: the temp
        # file the caller then finds (to resume from) no longer grows.  At
        # most one chunk: abort drops what is queued.
        writer.abort()
        await asyncio.shield(writer.done)
        raise
    finally:
        writer.abort()
        close_after(writer.done, fd)


def _open_at(path: Path, flags: int, offset: int) -> int:
    fd = os.open(path, flags, 0o666)
    try:
        os.ftruncate(fd, offset)
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = ["receive_file", "send_file"]
