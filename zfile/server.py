"""The daemon: one ROUTER socket, many clients, many transfers at once.

``Server(config).run()`` opens the store, binds the socket and serves until
SIGINT or SIGTERM; then it stops taking new transfers, lets running ones
finish for ``config.grace_period`` seconds, suspends what is left (uploads
keep their partials for resume) and exits.  A second signal forces the stop
at once (uvicorn's shutdown sequence).

Each transfer is a :class:`zfile.protocol.Transfer` keyed by (peer identity,
transfer id); uploads and downloads run as tasks so one slow disk or peer
never holds up the receive loop.  Memory per transfer is bounded by its credit
window: a peer cannot send more than it was granted (the protocol refuses
it), and the daemon sends a downloader no more than it granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field

from . import protocol
from .config import ServerConfig
from .errors import (
    ErrorCode,
    ProtocolError,
    RemoteProtocolError,
    StoreError,
    TransportError,
    ZfileError,
)
from .events import (
    Cancel,
    Chunk,
    Credit,
    Error,
    Event,
    Get,
    GetMeta,
    ListPage,
    ListRequest,
    Put,
    PutEnd,
    PutOk,
    PutReady,
)
from .store import Store
from .transport import Incoming, ServerSocket

log = logging.getLogger("zfile.server")


class _PeerStalled(TransportError):
    """The peer's pipe is full: it is not reading, and we will not buffer for it."""


@dataclass(eq=False)
class _Session:
    identity: bytes
    peer: str
    transfer: protocol.Transfer
    name: str = ""
    last_heard: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    credit_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def key(self) -> tuple[bytes, int]:
        return (self.identity, self.transfer.id)


class Server:
    """The zfile daemon.  ``run()`` blocks until shutdown and returns 0."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = Store(
            config.root,
            max_file_size=config.max_file_size,
            max_name_bytes=config.max_name_bytes,
            partial_ttl=config.partial_ttl,
        )
        self.endpoint: str | None = None
        self._sock: ServerSocket | None = None
        self._sessions: dict[tuple[bytes, int], _Session] = {}
        self._draining = False
        self._stop: asyncio.Event | None = None
        self._background: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped by a signal; return the process exit status."""
        asyncio.run(self.serve())
        return 0

    async def serve(self) -> None:
        await self.startup()
        try:
            assert self._stop is not None
            await self._stop.wait()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        """Open the store, bind the socket, install signal handlers."""
        self._stop = asyncio.Event()
        await self.store.open()
        try:
            self._sock = await ServerSocket.bind(self.config.bind)
        except BaseException:
            await self.store.close()
            raise
        self.endpoint = self._sock.endpoint
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.handle_exit, sig)
        self._background = [
            asyncio.create_task(self._receive_loop(), name="zfile-receive"),
            asyncio.create_task(self._sweep_idle(), name="zfile-idle"),
        ]
        log.info("listening on %s, store %s", self.endpoint, self.store.root)

    def handle_exit(self, sig: int | None = None) -> None:
        """First call: drain for the grace period.  Second call: stop now."""
        if self._draining:
            log.warning("second signal: stopping now, suspending %d transfer(s)", self._active())
            self._cancel_all()
            self._request_stop()
            return
        self._draining = True
        log.info(
            "shutting down: no new transfers; %d running get up to %.0f s",
            self._active(),
            self.config.grace_period,
        )
        self._background.append(asyncio.create_task(self._drain(), name="zfile-drain"))

    def _request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.config.grace_period
        while self._active() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._active():
            log.warning("grace period over: suspending %d transfer(s)", self._active())
        self._request_stop()

    async def shutdown(self) -> None:
        """Cancel what still runs (uploads keep partials), close socket and store."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        tasks = self._cancel_all()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*tasks, *self._background, return_exceptions=True)
        self._sessions.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        await self.store.close()
        log.info("stopped")

    def _active(self) -> int:
        return sum(1 for s in self._sessions.values() if s.task is not None and not s.task.done())

    def _cancel_all(self) -> list[asyncio.Task[None]]:
        tasks = [s.task for s in self._sessions.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        return tasks

    # -- receiving ---------------------------------------------------------------

    async def _receive_loop(self) -> None:
        assert self._sock is not None
        while True:
            try:
                incoming = await self._sock.recv()
            except TransportError as exc:
                log.error("socket failed, stopping: %s", exc)
                self._request_stop()
                return
            try:
                self._dispatch(incoming)
            except Exception:
                # A bug handling one message must not take the daemon down.
                log.exception("internal error handling a message from %s", incoming.peer or "?")

    def _dispatch(self, inc: Incoming) -> None:
        if inc.error is not None:
            self._refuse(inc, inc.error)
            return
        event = inc.event
        assert event is not None
        session = self._sessions.get((inc.identity, event.id))
        if session is None:
            self._open(inc, event)
            return
        session.last_heard = time.monotonic()
        try:
            session.transfer.receive(event)
        except RemoteProtocolError as exc:
            self._fail(session, exc)
            return
        if isinstance(event, (Chunk, PutEnd)):
            session.queue.put_nowait(event)
        elif isinstance(event, Credit):
            session.credit_arrived.set()
        elif isinstance(event, Cancel):
            self._end(session)
        elif isinstance(event, ListRequest):
            session.task = asyncio.create_task(self._list_page(session, event))

    def _refuse(self, inc: Incoming, exc: ProtocolError) -> None:
        tid = exc.transfer_id
        session = self._sessions.get((inc.identity, tid)) if tid is not None else None
        if session is not None:
            self._fail(session, exc)
        else:
            self._reply(inc.identity, Error(-1 if tid is None else tid, exc.code.value, str(exc)))

    def _open(self, inc: Incoming, event: Event) -> None:
        if isinstance(event, (Credit, Cancel)):
            return  # late credit or cancel for a transfer already over: harmless
        if not isinstance(event, (Put, Get, ListRequest)):
            self._reply(
                inc.identity,
                Error(event.id, ErrorCode.BAD_REQUEST.value, f"no transfer {event.id} is open for {event.TYPE}"),
            )
            return
        if self._draining:
            self._reply(inc.identity, Error(event.id, ErrorCode.BUSY.value, "the daemon is shutting down"))
            return
        if not isinstance(event, ListRequest) and self._active() >= self.config.max_transfers:
            msg = f"{self.config.max_transfers} transfers are running; try again shortly"
            self._reply(inc.identity, Error(event.id, ErrorCode.BUSY.value, msg))
            return
        transfer = protocol.Transfer(protocol.Role.SERVER, event.id)
        try:
            transfer.receive(event)
        except RemoteProtocolError as exc:
            self._reply(inc.identity, Error(event.id, exc.code.value, str(exc)))
            return
        session = _Session(inc.identity, inc.peer, transfer, name=getattr(event, "name", ""))
        self._sessions[session.key] = session
        if isinstance(event, Put):
            work = self._inline_upload(session, event) if event.inline else self._upload(session, event)
        elif isinstance(event, Get):
            work = self._download(session, event)
        else:
            work = self._list_page(session, event)
        session.task = asyncio.create_task(work)

    # -- replying ----------------------------------------------------------------

    def _reply(self, identity: bytes, event: Event) -> None:
        """Best-effort send outside any transfer (refusals)."""
        assert self._sock is not None
        with contextlib.suppress(TransportError):
            self._sock.send(identity, event)

    def _send(self, session: _Session, event: Event) -> None:
        """Send within a transfer; raises _PeerStalled or PeerGone."""
        assert self._sock is not None
        session.transfer.send(event)
        if not self._sock.send(session.identity, event):
            raise _PeerStalled(f"peer {session.peer or '?'} is not reading")

    def _fail(self, session: _Session, exc: ZfileError) -> None:
        """End a transfer with an ERROR to its peer (remote protocol violations)."""
        log.info("transfer %d from %s refused: %s", session.transfer.id, session.peer or "?", exc)
        self._reply(session.identity, Error(session.transfer.id, exc.code.value, str(exc)))
        self._end(session)

    def _end(self, session: _Session) -> None:
        self._sessions.pop(session.key, None)
        if session.task is not None and not session.task.done():
            session.task.cancel()

    def _finish(self, session: _Session, exc: BaseException | None) -> None:
        """Common ending of a transfer task: report a failure, forget the session."""
        if isinstance(exc, ZfileError) and not isinstance(exc, TransportError):
            self._reply(session.identity, Error(session.transfer.id, exc.code.value, str(exc)))
        elif exc is not None and not isinstance(exc, TransportError):
            log.error("internal error in transfer %d", session.transfer.id, exc_info=exc)
            self._reply(session.identity, Error(session.transfer.id, ErrorCode.INTERNAL.value, "internal error"))
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]

    def _log_transfer(self, session: _Session, direction: str, nbytes: int, began: float, digest: bytes, result: str):
        seconds = max(time.monotonic() - began, 1e-9)
        log.info(
            "peer=%s dir=%s name=%r bytes=%d seconds=%.3f MB/s=%.1f digest=%s result=%s",
            session.peer or "?",
            direction,
            session.name,
            nbytes,
            seconds,
            nbytes / seconds / 1e6,
            digest.hex()[:16],
            result,
        )

    # -- transfers ---------------------------------------------------------------

    async def _inline_upload(self, session: _Session, put: Put) -> None:
        began = time.monotonic()
        exc: BaseException | None = None
        try:
            assert put.data is not None and put.digest is not None
            entry = await self.store.put_inline(
                name=put.name,
                size=put.size,
                mtime_ns=put.mtime_ns,
                mode=put.mode,
                algo=put.algo,
                clobber=put.clobber,
                peer=session.peer,
                data=put.data,
                digest=put.digest,
            )
            self._send(session, PutOk(put.id, entry.size, entry.digest))
            self._log_transfer(session, "in", put.size, began, entry.digest, "ok")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            exc = e
            self._log_transfer(session, "in", 0, began, b"", f"failed: {e}")
        finally:
            self._finish(session, exc)

    async def _upload(self, session: _Session, put: Put) -> None:
        began = time.monotonic()
        exc: BaseException | None = None
        upload = None
        try:
            upload = await self.store.begin_upload(
                name=put.name,
                size=put.size,
                mtime_ns=put.mtime_ns,
                mode=put.mode,
                algo=put.algo,
                clobber=put.clobber,
                peer=session.peer,
            )
            window = self.config.window
            granted_end = min(put.size, upload.offset + window)
            self._send(session, PutReady(put.id, upload.transfer, upload.offset, granted_end - upload.offset))
            written = upload.offset
            while True:
                event = await session.queue.get()
                if isinstance(event, Chunk):
                    await upload.write(event.offset, event.data)
                    written += len(event.data)
                    # Grant back what was written, in steps of at least a chunk,
                    # never past the declared size.
                    new_end = min(put.size, written + window)
                    step = new_end - granted_end
                    if step > 0 and (step >= self.config.chunk_size or new_end == put.size):
                        self._send(session, Credit(put.id, step))
                        granted_end = new_end
                else:
                    assert isinstance(event, PutEnd)
                    entry = await upload.commit(event.digest)
                    upload = None
                    self._send(session, PutOk(put.id, entry.size, entry.digest))
                    self._log_transfer(session, "in", put.size, began, entry.digest, "ok")
                    return
        except asyncio.CancelledError:
            if upload is not None:
                await upload.suspend()
                self._log_transfer(session, "in", 0, began, b"", "suspended")
            raise
        except Exception as e:
            exc = e
            if upload is not None:
                # Keep the partial of an interrupted upload for resume; the
                # store already dropped partials that cannot complete.
                with contextlib.suppress(StoreError):
                    await upload.suspend()
            self._log_transfer(session, "in", 0, began, b"", f"failed: {e}")
        finally:
            self._finish(session, exc)

    async def _download(self, session: _Session, get: Get) -> None:
        began = time.monotonic()
        exc: BaseException | None = None
        download = None
        try:
            download = await self.store.open_download(get.name)
            entry = download.entry
            resume = get.offset if get.digest == entry.digest and get.offset <= entry.size else 0
            self._send(
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
            t = session.transfer
            while t.offset < t.size:
                if t.credit == 0:
                    session.credit_arrived.clear()
                    await session.credit_arrived.wait()
                    continue
                n = min(self.config.chunk_size, t.credit, t.size - t.offset)
                data = await download.read(t.offset, n)
                if len(data) != n:
                    raise StoreError(f"{entry.name} changed on disk while being sent")
                self._send(session, Chunk(get.id, t.offset, data))
            self._log_transfer(session, "out", entry.size - resume, began, entry.digest, "ok")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            exc = e
            self._log_transfer(session, "out", 0, began, b"", f"failed: {e}")
        finally:
            if download is not None:
                await download.close()
            self._finish(session, exc)

    async def _list_page(self, session: _Session, req: ListRequest) -> None:
        exc: BaseException | None = None
        try:
            entries = await self.store.list(req.prefix, req.after, req.limit + 1)
            more = len(entries) > req.limit
            self._send(session, ListPage(req.id, tuple(entries[: req.limit]), more))
            if more:
                return  # the session waits for the client to ask for the next page
        except asyncio.CancelledError:
            raise
        except Exception as e:
            exc = e
        self._finish(session, exc)

    async def _sweep_idle(self) -> None:
        """End transfers whose peer has been silent for ``idle_timeout`` seconds
        (a client killed mid-transfer): frees their memory and slot; an upload
        keeps its partial for resume."""
        period = min(1.0, self.config.idle_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                waiting_on_peer = session.task is None or session.task.done() or self._waits_on_peer(session)
                if waiting_on_peer and now - session.last_heard > self.config.idle_timeout:
                    log.info(
                        "transfer %d from %s idle for %.0f s: ending it",
                        session.transfer.id,
                        session.peer or "?",
                        self.config.idle_timeout,
                    )
                    self._reply(
                        session.identity,
                        Error(session.transfer.id, ErrorCode.BAD_REQUEST.value, "transfer idle for too long"),
                    )
                    self._end(session)

    @staticmethod
    def _waits_on_peer(session: _Session) -> bool:
        t = session.transfer
        if t.state is protocol.State.PUT_SENDING:
            return session.queue.empty()
        if t.state is protocol.State.GET_RECEIVING:
            return t.credit == 0
        return t.state is protocol.State.LIST_PAGED


__all__ = ["Server", "ServerConfig"]
