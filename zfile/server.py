"""The daemon: one ROUTER socket, many clients, many transfers at once.

``Server(config).run()`` opens the store, binds the socket and serves until
SIGINT or SIGTERM; then it stops taking new transfers, lets running ones
finish for ``config.grace_period`` seconds, suspends what is left (uploads
keep their partials for resume) and exits.  A second signal forces the stop
at once (uvicorn's shutdown sequence).  SIGHUP re-reads the authorized CURVE
keys; running transfers go on.  Under systemd (``Type=notify``) it reports
READY, STATUS, RELOADING, STOPPING and watchdog pings (:mod:`zfile.notify`).

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import protocol
from .auth import AuthorizedKeys, load_keypair
from .config import ServerConfig
from .endpoint import is_loopback
from .errors import (
    ConfigError,
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
from .notify import Notifier
from .store import Store
from .transport import Incoming, ServerCurve, ServerSocket

log = logging.getLogger("zfile.server")

# Received-but-unwritten upload data the daemon may hold, in credit windows,
# across all uploads (see Server._upload_window).
_UPLOAD_BUFFER_WINDOWS = 16

#: Worker threads for file I/O (writes, fsyncs, renames); see Server.startup.
_IO_THREADS = 32


class _PeerStalled(TransportError):
    """The peer's pipe is full: it is not reading, and we will not buffer for it."""


@dataclass(eq=False)
class _Session:
    identity: bytes
    peer: str
    transfer: protocol.Transfer
    name: str = ""
    #: The CURVE public key the peer authenticated with ("" without CURVE).
    peer_key: str = ""
    last_heard: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    credit_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def key(self) -> tuple[bytes, int]:
        return (self.identity, self.transfer.id)

    @property
    def who(self) -> str:
        """The peer as recorded in the catalog and logs: its CURVE key, else its address."""
        return self.peer_key or self.peer or "?"


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
        # Streaming uploads running, which share the upload buffer (_upload_window).
        self._streaming = 0
        self._authorized: AuthorizedKeys | None = None
        self._notifier = Notifier()

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
        """Load the CURVE keys, open the store, bind the socket, install signal
        handlers, then tell systemd READY=1.

        Raises :class:`ConfigError` for a key that cannot be loaded or a
        non-loopback bind without CURVE or ``insecure``; :class:`TransportError`
        when the address cannot be bound.
        """
        self._stop = asyncio.Event()
        # File I/O runs in the loop's default executor.  Its stock size (CPUs + 4)
        # caps how many commits can fsync at once; the file system merges
        # concurrent fsyncs into one journal commit, so more threads commit
        # more small files per second (measured: docs/performance.md).
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=_IO_THREADS, thread_name_prefix="zfile-io")
        )
        curve = self._load_curve()
        await self.store.open()
        try:
            self._sock = await ServerSocket.bind(self.config.bind, curve=curve)
        except BaseException:
            await self.store.close()
            raise
        self.endpoint = self._sock.endpoint
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.handle_exit, sig)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        self._background = [
            asyncio.create_task(self._receive_loop(), name="zfile-receive"),
            asyncio.create_task(self._sweep_idle(), name="zfile-idle"),
            asyncio.create_task(self._sweep_partials(), name="zfile-partials"),
            asyncio.create_task(self._notifier.report_status(self._status), name="zfile-status"),
        ]
        if self._notifier.watchdog_interval is not None:
            self._background.append(asyncio.create_task(self._notifier.watchdog(), name="zfile-watchdog"))
        log.info(
            "listening on %s, store %s, %s",
            self.endpoint,
            self.store.root,
            f"CURVE on, {len(curve.authorized.keys)} authorized key(s)" if curve else "CURVE off (not encrypted)",
        )
        self._notifier.notify("READY=1", self._status())

    def _load_curve(self) -> ServerCurve | None:
        cfg = self.config
        if cfg.secret_key is None or cfg.authorized_keys is None:
            check_bind(cfg)
            return None
        self._authorized = AuthorizedKeys(cfg.authorized_keys)
        return ServerCurve(load_keypair(cfg.secret_key), self._authorized)

    def reload(self) -> None:
        """Re-read the authorized keys (SIGHUP, ``systemctl reload``).

        New handshakes see the new set; connections already made and their
        transfers go on.  A directory that fails to load leaves the old set
        in force and is logged.
        """
        if self._authorized is None:
            log.info("SIGHUP: CURVE is off, nothing to reload")
            return
        self._notifier.notify("RELOADING=1")
        try:
            count = self._authorized.reload()
        except ConfigError as exc:
            log.error("reload failed, keeping %d authorized key(s): %s", len(self._authorized.keys), exc)
        else:
            log.info("reloaded %d authorized key(s) from %s", count, self._authorized.directory)
        self._notifier.notify("READY=1", self._status())

    def _status(self) -> str:
        state = "draining" if self._draining else "serving"
        return f"STATUS={state} on {self.endpoint}: {self._active()} transfer(s) in flight"

    def handle_exit(self, sig: int | None = None) -> None:
        """First call: drain for the grace period.  Second call: stop now."""
        if self._draining:
            log.warning("second signal: stopping now, suspending %d transfer(s)", self._active())
            self._cancel_all()
            self._request_stop()
            return
        self._draining = True
        self._notifier.notify("STOPPING=1", self._status())
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
        if not self._draining:
            self._notifier.notify("STOPPING=1")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
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
        self._notifier.close()
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
        session = _Session(inc.identity, inc.peer, transfer, name=getattr(event, "name", ""), peer_key=inc.peer_key)
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

    async def _send(self, session: _Session, event: Event) -> None:
        """Send an event within a transfer, waiting while the peer's pipe is full.

        The per-peer pipe's high-water mark is small (zfile.transport), so a
        peer that stops reading fills it soon, and one client's many small
        transfers can fill it with bursts of replies.  ROUTER offers no
        per-peer writability event, so the daemon holds just this one message
        and retries, backing off from 1 ms to 100 ms, for up to
        ``idle_timeout`` seconds; then it ends the transfer with
        _PeerStalled.  Raises PeerGone when the peer has disconnected.
        """
        assert self._sock is not None
        session.transfer.send(event)
        deadline = time.monotonic() + self.config.idle_timeout
        delay = 0.001
        while not self._sock.send(session.identity, event):
            if time.monotonic() >= deadline:
                raise _PeerStalled(f"peer {session.peer or '?'} read nothing for {self.config.idle_timeout:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

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
                peer=session.peer_key or session.peer,
                data=put.data,
                digest=put.digest,
            )
            await self._send(session, PutOk(put.id, entry.size, entry.digest))
            self._log_transfer(session, "in", put.size, began, entry.digest, "ok")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            exc = e
            self._log_transfer(session, "in", 0, began, b"", f"failed: {e}")
        finally:
            self._finish(session, exc)

    def _upload_window(self) -> int:
        """Bytes one upload may have granted and not yet written: ``window``,
        shrunk while many uploads run so that together they hold at most
        _UPLOAD_BUFFER_WINDOWS windows (128 MiB by default) whatever their
        number, but never under one chunk, so every upload keeps moving.  A
        smaller window only delays grants: credit already given stays valid."""
        share = self.config.window * _UPLOAD_BUFFER_WINDOWS // max(1, self._streaming)
        return max(self.config.chunk_size, min(self.config.window, share))

    async def _upload(self, session: _Session, put: Put) -> None:
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
            granted_end = min(put.size, upload.offset + self._upload_window())
            ready = PutReady(put.id, upload.transfer, upload.offset, granted_end - upload.offset)
            await self._send(session, ready)
            written = upload.offset
            while True:
                event = await session.queue.get()
                if isinstance(event, Chunk):
                    await upload.write(event.offset, event.data)
                    written += len(event.data)
                    # Grant back what was written, in steps of at least a chunk,
                    # never past the declared size.
                    new_end = min(put.size, written + self._upload_window())
                    step = new_end - granted_end
                    if step > 0 and (step >= self.config.chunk_size or new_end == put.size):
                        await self._send(session, Credit(put.id, step))
                        granted_end = new_end
                else:
                    assert isinstance(event, PutEnd)
                    entry = await upload.commit(event.digest)
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

    async def _download(self, session: _Session, get: Get) -> None:
        began = time.monotonic()
        exc: BaseException | None = None
        download = None
        try:
            download = await self.store.open_download(get.name)
            entry = download.entry
            resume = get.offset if get.digest == entry.digest and get.offset <= entry.size else 0
            await self._send(
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
                await self._send(session, Chunk(get.id, t.offset, data))
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
            await self._send(session, ListPage(req.id, tuple(entries[: req.limit]), more))
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
            idle = []
            for session in list(self._sessions.values()):
                waiting_on_peer = session.task is None or session.task.done() or self._waits_on_peer(session)
                if waiting_on_peer and now - session.last_heard > self.config.idle_timeout:
                    log.info(
                        "transfer %d from %s idle for %.0f s: ending it",
                        session.transfer.id,
                        session.peer or "?",
                        self.config.idle_timeout,
                    )
                    self._end(session)
                    idle.append(session)
            # Tell the peers once their uploads have released their partials, so
            # that one resuming at once is not answered busy.
            tasks = [s.task for s in idle if s.task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=self.config.idle_timeout)
            for session in idle:
                self._reply(
                    session.identity,
                    Error(session.transfer.id, ErrorCode.BAD_REQUEST.value, "transfer idle for too long"),
                )

    async def _sweep_partials(self) -> None:
        """Delete partials unused for ``partial_ttl`` seconds, checking every
        tenth of it (at least each second, at most each hour); the store also
        sweeps when it opens."""
        period = min(max(self.config.partial_ttl / 10, 1.0), 3600.0)
        while True:
            await asyncio.sleep(period)
            try:
                if swept := await self.store.sweep_partials():
                    log.info("swept %d partial upload(s) unused for %.0f s", swept, self.config.partial_ttl)
            except StoreError as exc:
                log.error("could not sweep partial uploads: %s", exc)

    @staticmethod
    def _waits_on_peer(session: _Session) -> bool:
        t = session.transfer
        if t.state is protocol.State.PUT_SENDING:
            return session.queue.empty()
        if t.state is protocol.State.GET_RECEIVING:
            return t.credit == 0
        return t.state is protocol.State.LIST_PAGED


def check_bind(config: ServerConfig) -> None:
    """Refuse to serve a non-loopback address unauthenticated and in clear.

    Without CURVE only loopback (127.0.0.0/8, ``localhost``, ``[::1]``) and
    ``ipc://`` endpoints may be bound; ``config.insecure`` overrides that with
    a warning.  Raises :class:`ConfigError`.
    """
    if config.secret_key is not None or is_loopback(config.bind):
        return
    if not config.insecure:
        raise ConfigError(
            f"refusing to bind {config.bind} without CURVE: anyone who can reach it could read and write the "
            "store. Set secret_key and authorized_keys (see `zfile keygen`), or pass --insecure"
        )
    log.warning(
        "INSECURE: serving %s without CURVE: no authentication and no encryption; "
        "anyone who can reach this address can read, replace and add files",
        config.bind,
    )


__all__ = ["Server", "ServerConfig", "check_bind"]
