"""The transfers in flight: one :class:`Session` each, and the task that runs it.

Each transfer is a :class:`zfile.protocol.Transfer` keyed by (peer identity,
transfer id); uploads and downloads run as tasks so one slow disk or peer
never holds up the receive loop.  Memory per transfer is bounded by its credit
window: a peer cannot send more than it was granted (the protocol refuses
it), and the daemon sends a downloader no more than it granted.

:class:`zfile.server.Server` owns one :class:`Transfers`: it decides which
requests to admit and feeds each session the events its peer sends; this
module does the work of each upload (streamed, inline, PUT-MANY, PUT-STREAM)
and list page, sends its replies, and logs each transfer when it ends;
downloads run in :mod:`zfile.server.downloads`, file operations in
:mod:`zfile.server.ops`, chain uploads in :mod:`zfile.server.forward`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from zfile import protocol
from zfile.errors import ErrorCode, PeerStalled, StoreError, TransportError, ZfileError
from zfile.fileio.chunks import Tracker
from zfile.protocol.credit import CreditWindow
from zfile.protocol.events import (
    Chunk,
    Credit,
    Error,
    Event,
    FileResult,
    GetMany,
    ListPage,
    ListRequest,
    Put,
    PutEnd,
    PutMany,
    PutManyOk,
    PutOk,
    PutReady,
)
from zfile.server import downloads, getmany
from zfile.server.config import ServerConfig
from zfile.server.forward import Relays
from zfile.server.keepalive import keep_alive
from zfile.server.ops import Operations
from zfile.server.replies import PendingReplies
from zfile.server.session import Session, log_name
from zfile.server.stream_in import receive_stream
from zfile.store import Store
from zfile.transport.sockets import Incoming, ServerSocket

# The daemon's records keep one logger name whichever module writes them: the
# text line's name and the JSON "logger" key are what operators filter on.
log = logging.getLogger("zfile.server")

# Received-but-unwritten upload data the daemon may hold, in credit windows,
# across all uploads (see Transfers._upload_window).
_UPLOAD_BUFFER_WINDOWS = 16

# States in which a transfer's bytes stream and its rate is held to min_rate.
_STREAMING = frozenset({protocol.State.PUT_SENDING, protocol.State.GET_RECEIVING})
# Seconds a stream may go under min_rate before a request that finds every
# slot taken may end it to take its slot (Transfers.slowest_stalled).
_STALL_GRACE = 2.0


class Transfers:
    """The sessions in flight and the work of each.

    ``sock`` is set by the server once it has bound its socket.
    """

    def __init__(self, config: ServerConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.sock: ServerSocket | None = None
        self.sessions: dict[tuple[bytes, int], Session] = {}
        #: Called with (direction, bytes, seconds, result) as each transfer
        #: ends, after its log line (metrics).
        self.on_finished: list[Callable[[str, int, float, str], object]] = []
        # Streaming uploads running, which share the upload buffer (_upload_window).
        self._streaming = 0
        self._replies: PendingReplies | None = None
        # The work that serves each kind of request (protocol.message_kind).
        self._work: dict[str, Callable[[Session, Any], Awaitable[None]]] = {
            "PUT": self._upload,
            "PUT+DATA": self._inline_upload,
            "PUT-MANY": self._put_many,
            "GET": functools.partial(downloads.download, self),
            "LIST": self._list_page,
            **dict.fromkeys(protocol.OPERATIONS, self._operation),
            "PUT-STREAM": self._stream_upload,
            "GET-MANY": functools.partial(downloads.get_many, self),
        }
        # A PING's own session is running while it counts the others.
        self.operations = Operations(store, running=lambda: self.active() - 1)
        #: Chain uploads (zfile.server.forward): stored here and forwarded.
        self.relays = Relays(self)

    # -- the session table -------------------------------------------------------

    def start(self, inc: Incoming, transfer: protocol.Transfer, event: Event) -> None:
        """Record a session for an admitted request and start its task."""
        name = log_name(event) if isinstance(event, PutMany) else getattr(event, "name", "")
        if isinstance(event, GetMany):
            name = getmany.summary(event)
        session = Session(inc.identity, inc.peer, transfer, name=name, peer_key=inc.peer_key)
        self.sessions[session.key] = session
        work = self._work[protocol.message_kind(event)]
        if isinstance(event, Put) and (event.chain or event.origin) and not event.inline:
            work = self.relays.run
        session.task = asyncio.create_task(work(session, event))

    def next_page(self, session: Session, req: ListRequest) -> None:
        """Send the next page of a listing the peer asked to go on with."""
        session.task = asyncio.create_task(self._list_page(session, req))

    def active(self) -> int:
        return sum(1 for s in self.sessions.values() if s.task is not None and not s.task.done())

    def running(self, owner: str | bytes) -> tuple[int, int]:
        """Transfers running (a listing between pages is not), in all and of
        ``owner`` (:attr:`Session.owner`)."""
        total = mine = 0
        for s in self.sessions.values():
            if s.task is not None and not s.task.done():
                total += 1
                mine += s.owner == owner
        return total, mine

    def slowest_stalled(self, now: float) -> tuple[Session, int, float] | None:
        """The stream to end so that a new request finds a slot when every
        slot is taken: one waiting on its peer that has moved under
        ``min_rate`` bytes/s for at least _STALL_GRACE seconds of its current
        rate period, the one that moved least; with the bytes it moved and in
        how many seconds.  None when every stream keeps up (then the daemon
        is truly full)."""
        if self.config.min_rate <= 0:
            return None
        found: tuple[Session, int, float] | None = None
        for session in self.sessions.values():
            t = session.transfer
            if session.rate_mark is None or t.state not in _STREAMING or not session.waits_on_peer():
                continue
            since, offset = session.rate_mark
            seconds, moved = now - since, t.offset - offset
            if seconds < _STALL_GRACE or moved >= self.config.min_rate * seconds:
                continue
            if found is None or moved / seconds < found[1] / found[2]:
                found = (session, moved, seconds)
        return found

    def too_slow(self, session: Session, now: float) -> int | None:
        """The bytes ``session``'s stream moved in the rate period that just
        ended, when that was under ``min_rate`` per second while the transfer
        waits on its peer (then the peer, not the daemon, is what holds it
        up); else None.  A period lasts ``idle_timeout`` seconds and starts
        when the stream first flows."""
        t = session.transfer
        if self.config.min_rate <= 0 or t.state not in _STREAMING:
            return None
        if session.rate_mark is None:
            session.rate_mark = (now, t.offset)
            return None
        since, offset = session.rate_mark
        if now - since < self.config.idle_timeout:
            return None
        session.rate_mark = (now, t.offset)
        moved = t.offset - offset
        if moved < self.config.min_rate * (now - since) and session.waits_on_peer():
            return moved
        return None

    def cancel_all(self) -> list[asyncio.Task[None]]:
        tasks = [s.task for s in self.sessions.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        if self._replies is not None:
            tasks += self._replies.cancel()
        return tasks

    def fail(self, session: Session, exc: ZfileError) -> None:
        """End a transfer with an ERROR to its peer (remote protocol violations)."""
        log.info("transfer %d from %s refused: %s", session.transfer.id, session.peer or "?", exc)
        self.reply(session.identity, Error(session.transfer.id, exc.code.value, str(exc)))
        self.end(session)

    def end(self, session: Session) -> None:
        self.sessions.pop(session.key, None)
        if session.task is not None and not session.task.done():
            session.task.cancel()

    def _finish(self, session: Session, exc: BaseException | None) -> None:
        """Common ending of a transfer task: report a failure, forget the session."""
        if isinstance(exc, ZfileError) and not isinstance(exc, TransportError):
            self.reply(session.identity, Error(session.transfer.id, exc.code.value, str(exc)))
        elif exc is not None and not isinstance(exc, TransportError):
            log.error("internal error in transfer %d", session.transfer.id, exc_info=exc)
            self.reply(session.identity, Error(session.transfer.id, ErrorCode.INTERNAL.value, "internal error"))
        if self.sessions.get(session.key) is session:
            del self.sessions[session.key]

    # -- for zfile.server.forward and .downloads, which run work on these sessions

    async def send_in(self, session: Session, event: Event, *, track: bool = False) -> Tracker | None:
        """Send ``event`` within ``session``'s transfer (see _send)."""
        return await self._send(session, event, track=track)

    def upload_window(self) -> int:
        return self._upload_window()

    def log_transfer(self, session: Session, direction: str, nbytes: int, began: float, digest: bytes, result: str):
        self._log_transfer(session, direction, nbytes, began, digest, result)

    def finish(self, session: Session, exc: BaseException | None) -> None:
        self._finish(session, exc)

    # -- replying ----------------------------------------------------------------

    def reply(self, identity: bytes, event: Event) -> None:
        """Best-effort send outside any transfer (refusals); one that finds
        the peer's pipe full waits for room (:mod:`zfile.server.replies`)."""
        assert self.sock is not None
        if self._replies is None:
            self._replies = PendingReplies(self.sock, self.config.idle_timeout)
        self._replies.send(identity, event)

    async def _send(self, session: Session, event: Event, *, track: bool = False) -> Tracker | None:
        """Send an event within a transfer, waiting while the peer's pipe is full;
        with ``track`` return the tracker of its data frame
        (:meth:`ServerSocket.send_tracked`).

        The per-peer pipe's high-water mark is small (zfile.transport), so a
        peer that stops reading fills it soon, and one client's many small
        transfers can fill it with bursts of replies.  ROUTER offers no
        per-peer writability event, so the daemon holds just this one message
        and retries, backing off from 1 ms to 100 ms, for up to
        ``idle_timeout`` seconds; then it ends the transfer with
        PeerStalled.  Raises PeerGone when the peer has disconnected.
        """
        assert self.sock is not None
        session.transfer.send(event)
        deadline = time.monotonic() + self.config.idle_timeout
        delay = 0.001
        send = self.sock.send_tracked if track else self.sock.send
        while not (sent := send(session.identity, event)):
            if time.monotonic() >= deadline:
                raise PeerStalled(f"peer {session.peer or '?'} read nothing for {self.config.idle_timeout:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        return sent if track else None

    def _log_transfer(self, session: Session, direction: str, nbytes: int, began: float, digest: bytes, result: str):
        """The one log line per finished or failed transfer; with ``--log-format
        json`` its fields are also keys of the JSON object."""
        seconds = max(time.monotonic() - began, 1e-9)
        fields = {
            "peer": session.who,
            "addr": session.peer,
            "direction": direction,
            "file": session.name,
            "bytes": nbytes,
            "seconds": round(seconds, 3),
            "mb_per_s": round(nbytes / seconds / 1e6, 1),
            "digest": digest.hex(),
            "result": result,
        }
        log.info(
            "peer=%s addr=%s dir=%s name=%r bytes=%d seconds=%.3f MB/s=%.1f digest=%s result=%s",
            session.who,
            session.peer or "?",
            direction,
            session.name,
            nbytes,
            seconds,
            nbytes / seconds / 1e6,
            digest.hex()[:16],
            result,
            extra=fields,
        )
        for hook in self.on_finished:
            hook(direction, nbytes, seconds, result)

    # -- transfers ---------------------------------------------------------------

    async def logged(
        self, session: Session, work: Callable[[], Awaitable[tuple[int, bytes, str]]], direction: str = "in"
    ) -> None:
        """Run ``work``, which returns (bytes moved, digest, result) for the
        transfer's log line; log a failure instead, and end the session either way."""
        began = time.monotonic()
        exc: BaseException | None = None
        try:
            nbytes, digest, result = await work()
            self._log_transfer(session, direction, nbytes, began, digest, result)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            exc = e
            self._log_transfer(session, direction, 0, began, b"", f"failed: {e}")
        finally:
            self._finish(session, exc)

    async def _inline_upload(self, session: Session, put: Put) -> None:
        async def work() -> tuple[int, bytes, str]:
            assert put.data is not None and put.digest is not None
            entry = await self.store.put_inline(
                name=put.name,
                size=put.size,
                mtime_ns=put.mtime_ns,
                mode=put.mode,
                algo=put.algo,
                clobber=put.clobber,
                peer=session.peer_key or session.peer,
                data=put.data,
                digest=put.digest,
            )
            await self._send(session, PutOk(put.id, entry.size, entry.digest))
            return put.size, entry.digest, "ok"

        await self.logged(session, work)

    async def _put_many(self, session: Session, req: PutMany) -> None:
        async def work() -> tuple[int, bytes, str]:
            results = await self.store.put_many(req.files, algo=req.algo, peer=session.peer_key or session.peer)
            replies = []
            stored = 0
            for f, result in zip(req.files, results, strict=True):
                if isinstance(result, ZfileError):
                    log.info("peer=%s name=%r refused: %s", session.who, f.name, result)
                    replies.append(FileResult(result.code.value, str(result)))
                else:
                    # One INFO line per message, not per file: at thousands of files a
                    # second the log itself would cost more than the store.
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("peer=%s name=%r bytes=%d stored", session.who, f.name, f.size)
                    stored += result.size
                    replies.append(FileResult(digest=result.digest))
            await self._send(session, PutManyOk(req.id, tuple(replies)))
            ok = sum(r.ok for r in replies)
            if len(replies) == 1:  # logged as a single inline PUT would be
                return stored, replies[0].digest or b"", "ok" if ok else "refused"
            return stored, b"", f"ok {ok} of {len(replies)}"

        await self.logged(session, work)

    def _upload_window(self) -> int:
        """Bytes one upload may have granted and not yet written: ``window``,
        shrunk while many uploads run so that together they hold at most
        _UPLOAD_BUFFER_WINDOWS windows (128 MiB by default) whatever their
        number, but never under one chunk, so every upload keeps moving.  A
        smaller window only delays grants: credit already given stays valid.
        A shrunk window is a whole number of chunks: the client cuts a chunk
        at the edge of its credit, so a window of 1.3 chunks (100 uploads)
        turned 1,000 chunks into 1,533 messages, each its own write hop."""
        share = self.config.window * _UPLOAD_BUFFER_WINDOWS // max(1, self._streaming)
        if share >= self.config.window:
            return self.config.window
        chunk = self.config.chunk_size
        return max(chunk, share - share % chunk)

    async def _upload(self, session: Session, put: Put) -> None:
        began = time.monotonic()
        exc: BaseException | None = None
        upload = None
        streaming = False
        try:
            upload = await self.store.begin_upload(
                name=put.name,
                size=put.size,
                mtime_ns=put.mtime_ns,
                mode=put.mode,
                algo=put.algo,
                clobber=put.clobber,
                peer=session.peer_key or session.peer,
            )
            if upload.offset:
                log.info("resuming upload of %r at byte %d of %d", put.name, upload.offset, put.size)
            self._streaming += 1
            streaming = True
            credit = CreditWindow(upload.offset, put.size, self._upload_window(), self.config.chunk_size)
            await self._send(session, PutReady(put.id, upload.transfer, upload.offset, credit.initial))
            written = upload.offset
            while True:
                event = await session.queue.get()
                if isinstance(event, Chunk):
                    await upload.write(event.offset, event.data)
                    written += len(event.data)
                    # Credit only for bytes written: memory per upload stays within its window.
                    if step := credit.grant(written, self._upload_window()):
                        await self._send(session, Credit(put.id, step))
                else:
                    assert isinstance(event, PutEnd)
                    # The commit may outlast the client's timeout (keepalive.py).
                    ping = functools.partial(self._send, session, Credit(put.id, 1))
                    entry = await keep_alive(upload.commit(event.digest), ping)
                    upload = None
                    await self._send(session, PutOk(put.id, entry.size, entry.digest))
                    self._log_transfer(session, "in", put.size, began, entry.digest, "ok")
                    return
        except asyncio.CancelledError:
            if upload is not None:
                try:
                    await upload.suspend()
                finally:  # logged even when cancelled again while suspending
                    self._log_transfer(session, "in", 0, began, b"", "suspended")
            raise
        except Exception as e:
            exc = e
            try:
                if upload is not None:
                    # Keep the partial of an interrupted upload for resume; the
                    # store already dropped partials that cannot complete.
                    with contextlib.suppress(StoreError):
                        await upload.suspend()
            finally:  # (the peer's CANCEL can cancel this task while it suspends)
                self._log_transfer(session, "in", 0, began, b"", f"failed: {e}")
        finally:
            if streaming:
                self._streaming -= 1
            self._finish(session, exc)

    async def _stream_upload(self, session: Session, put: protocol.PutStream) -> None:
        async def work() -> tuple[int, bytes, str]:
            c = self.config
            entry = await receive_stream(
                put,
                self.store,
                session.queue,
                lambda event: self._send(session, event),
                window=self._upload_window,
                chunk_size=c.chunk_size,
                max_name_bytes=c.max_name_bytes,
                peer=session.peer_key or session.peer,
            )
            await self._send(session, PutOk(put.id, entry.size, entry.digest))
            return entry.size, entry.digest, "ok"

        self._streaming += 1  # its unwritten bytes count against the shared upload buffer
        try:
            await self.logged(session, work)
        finally:
            self._streaming -= 1

    async def _operation(self, session: Session, req: Event) -> None:
        """Answer a file operation (:mod:`zfile.server.ops`)."""
        exc: BaseException | None = None
        try:
            await self._send(session, await self.operations.answer(req, session.who))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            exc = e
        self._finish(session, exc)

    async def _list_page(self, session: Session, req: ListRequest) -> None:
        exc: BaseException | None = None
        try:
            entries = await self.store.list(req.prefix, req.after, req.limit + 1)
            # Long names can make `limit` entries more than a peer decodes in one message.
            count = protocol.page_fit(entries[: req.limit])
            more = len(entries) > count
            await self._send(session, ListPage(req.id, tuple(entries[:count]), more))
            if more:
                return  # the session waits for the client to ask for the next page
        except asyncio.CancelledError:
            raise
        except Exception as e:
            exc = e
        self._finish(session, exc)


__all__ = ["Session", "Transfers"]
