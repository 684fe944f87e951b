"""The daemon: one ROUTER socket, many clients, many transfers at once.

``Server(config).run()`` opens the store, binds the socket and serves until
SIGINT or SIGTERM; then it stops taking new transfers, lets running ones
finish for ``config.grace_period`` seconds, suspends what is left (uploads
keep their partials for resume) and exits.  A second signal forces the stop
at once (uvicorn's shutdown sequence).  SIGHUP re-reads the authorized CURVE
keys; running transfers go on.  Under systemd (``Type=notify``) it reports
READY, STATUS, RELOADING, STOPPING and watchdog pings, and asks for more
time for a long start or drain (:mod:`zfile.server.notify`).

The receive loop here admits requests (refusing them while draining or at
``max_transfers``) and hands each message to its transfer; the transfers
themselves (upload, download, list, and their pacing and logging) run in
:mod:`zfile.server.sessions`, as tasks so one slow disk or peer never holds up the
receive loop.  Idle transfers and stale partials are swept from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from zfile import protocol
from zfile.errors import (
    ConfigError,
    ErrorCode,
    ProtocolError,
    RemoteProtocolError,
    StoreError,
    TransportError,
)
from zfile.protocol.events import (
    Check,
    Error,
    Event,
    ListRequest,
    Ping,
)
from zfile.server import readonly
from zfile.server.config import ServerConfig, check_bind
from zfile.server.notify import Notifier
from zfile.server.session import Session
from zfile.server.sessions import Transfers
from zfile.store import Store, make_store
from zfile.store.litter import Limits
from zfile.transport.curve import AuthorizedKeys, load_keypair
from zfile.transport.sockets import Incoming, ServerCurve, ServerSocket

if TYPE_CHECKING:
    from zfile.http import HttpFront

log = logging.getLogger("zfile.server")

#: Worker threads for file I/O (writes, fsyncs, renames); see Server.startup.
_IO_THREADS = 32


#: Seconds between looks at whether the store is still there (Store.lost).
STORE_WATCH_PERIOD = 2.0

#: Seconds a stop may take after its drain (cancel, close the socket and the store).
_CLOSE_MARGIN = 15.0


class Server:
    """The zfile daemon.  ``run()`` blocks until shutdown and returns its
    exit status: 0, or 1 when it stopped because its store was lost."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store: Store = make_store(
            config.store or config.root,
            max_file_size=config.max_file_size,
            max_name_bytes=config.max_name_bytes,
            partial_ttl=config.partial_ttl,
            partial_limits=Limits(
                config.max_partials,
                config.max_partial_bytes,
                config.max_partials_per_peer,
                config.max_partial_bytes_per_peer,
            ),
            s3_endpoint=config.s3_endpoint,
            adopt=config.adopt,
        )
        self.endpoint: str | None = None
        self._sock: ServerSocket | None = None
        self._draining = False
        self._exit_status = 0
        # Transfers the idle sweep ended whose ERROR waits for their work to
        # stop, by (identity, transfer id): their late frames are dropped, so
        # that the ERROR saying why is the peer's first answer.
        self._ending: set[tuple[bytes, int]] = set()
        self._stop: asyncio.Event | None = None
        self._background: list[asyncio.Task[None]] = []
        self._authorized: AuthorizedKeys | None = None
        self._notifier = Notifier()
        #: The transfers in flight and the work of each.
        self.transfers = Transfers(config, self.store)
        #: The HTTP front over the same store, when ``config.http`` is set.
        self.http: HttpFront | None = None
        if config.http is not None:
            from zfile.http import HttpFront  # aiohttp loads only when HTTP is on

            self.http = HttpFront(
                self.store,
                address=config.http,
                tokens=config.http_tokens,
                insecure=config.insecure,
                max_file_size=config.max_file_size,
                max_name_bytes=config.max_name_bytes,
                shutdown_timeout=config.grace_period,
                idle_timeout=config.idle_timeout,
                max_uploads=config.max_transfers,
                cert=config.http_cert,
                key=config.http_key,
                read_only=config.read_only,
            )
            metrics = self.http.metrics
            metrics.watch("zfile_zmq_transfers_in_flight", "ZeroMQ transfers running", lambda: self.transfers.active())
            self.transfers.on_finished.append(metrics.transfer_done)
            metrics.watch("zfile_store_partials", "Uploads kept for resume", lambda: self.store.usage().partials)
            metrics.watch(
                "zfile_store_partial_bytes", "Bytes the kept uploads hold", lambda: self.store.usage().partial_bytes
            )
            metrics.watch("zfile_store_free_bytes", "Bytes free for new files (NaN: no limit)", self._free_bytes)

    def _free_bytes(self) -> float:
        free = self.store.usage().free
        return math.nan if free is None else float(free)

    # -- lifecycle -------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped by a signal, or by the loss of the store;
        return the process exit status (0, or 1 for the loss)."""
        asyncio.run(self.serve())
        return self._exit_status

    async def serve(self) -> None:
        await self.startup()
        try:
            assert self._stop is not None
            await self._stop.wait()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        """Load the CURVE keys, open the store (asking systemd for more time
        while it takes long: Notifier.extend_start), bind the socket, install
        signal handlers, then tell systemd READY=1.

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
        if self.http is not None:
            self.http.check()  # a refused address or a bad token file fails before the store opens
        began = time.monotonic()
        async with self._notifier.extending(
            lambda: f"STATUS=opening the store {self.store.location}: {time.monotonic() - began:.0f} s so far"
        ):
            await self.store.open()
        try:
            # A client's chunk is at most its credit, which never exceeds the window.
            largest = protocol.max_frame_bytes(max(self.config.chunk_size, self.config.window))
            self._sock = await ServerSocket.bind(self.config.bind, curve=curve, max_frame_bytes=largest)
            if self.http is not None:
                await self._start_http()
        except BaseException:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            await self.store.close()
            raise
        self.endpoint = self._sock.endpoint
        self.transfers.sock = self._sock
        self.transfers.operations.curve = curve is not None
        self.transfers.operations.read_only = self.config.read_only
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
            asyncio.create_task(self._watch_store(), name="zfile-store-watch"),
            asyncio.create_task(self._notifier.report_status(self._status), name="zfile-status"),
        ]
        if self._notifier.watchdog_interval is not None:
            self._background.append(asyncio.create_task(self._notifier.watchdog(), name="zfile-watchdog"))
        log.info(
            "listening on %s, store %s, %s",
            self.endpoint,
            self.store.location,
            f"CURVE on, {len(curve.authorized.keys)} authorized key(s)" if curve else "CURVE off (not encrypted)",
        )
        self._notifier.notify("READY=1", self._status())

    async def _start_http(self) -> None:
        assert self.http is not None
        try:
            await self.http.start()
        except OSError as exc:
            raise TransportError(f"cannot serve HTTP on {self.http.url}: {exc.strerror or exc}") from None

    def _load_curve(self) -> ServerCurve | None:
        cfg = self.config
        if cfg.secret_key is None or cfg.authorized_keys is None:
            check_bind(cfg)
            return None
        self._authorized = AuthorizedKeys(cfg.authorized_keys)
        return ServerCurve(load_keypair(cfg.secret_key), self._authorized)

    def reload(self) -> None:
        """Re-read the authorized keys and the HTTP token file (SIGHUP,
        ``systemctl reload``).

        New handshakes and requests see the new sets; connections already
        made and their transfers go on.  A directory or file that fails to
        load leaves the old set in force and is logged.
        """
        if self.http is not None:
            self.http.reload()
        if self._authorized is None:
            log.info("SIGHUP: CURVE is off, no keys to reload")
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
        return f"STATUS={state} on {self.endpoint}: {self.transfers.active()} transfer(s) in flight"

    def handle_exit(self, sig: int | None = None) -> None:
        """First call: drain for the grace period (telling systemd the stop
        may take that long, and a margin).  Second call: stop now."""
        if self._draining:
            log.warning("second signal: stopping now, suspending %d transfer(s)", self.transfers.active())
            self.transfers.cancel_all()
            self._request_stop()
            return
        self._draining = True
        # A grace period longer than the unit's TimeoutStopSec= must not end in SIGKILL:
        # systemd extends the stop's timeout, never shortens it (sd_notify(3)).
        extend = round((self.config.grace_period + _CLOSE_MARGIN) * 1e6)
        self._notifier.notify("STOPPING=1", f"EXTEND_TIMEOUT_USEC={extend}", self._status())
        log.info(
            "shutting down: no new transfers; %d running get up to %.0f s",
            self.transfers.active(),
            self.config.grace_period,
        )
        self._background.append(asyncio.create_task(self._drain(), name="zfile-drain"))

    def _request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.config.grace_period
        # HTTP stops listening now and its running requests get the same grace period.
        http = asyncio.create_task(self.http.stop()) if self.http is not None else None
        while self.transfers.active() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.transfers.active():
            log.warning("grace period over: suspending %d transfer(s)", self.transfers.active())
        if http is not None:
            await asyncio.wait([http], timeout=max(deadline - time.monotonic(), 0))
        self._request_stop()

    async def shutdown(self) -> None:
        """Cancel what still runs (uploads keep partials), close socket and store."""
        if not self._draining:
            self._notifier.notify("STOPPING=1")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        tasks = self.transfers.cancel_all()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*tasks, *self._background, return_exceptions=True)
        self.transfers.sessions.clear()
        if self.http is not None:
            await self.http.stop()  # before the store closes: no request may outlive it
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.transfers.sock = None
        await self.store.close()
        self._notifier.close()
        log.info("stopped")

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
        session = self.transfers.sessions.get((inc.identity, event.id))
        if session is None:
            self._open(inc, event)
            return
        session.last_heard = time.monotonic()
        try:
            action = session.transfer.receive(event)
        except RemoteProtocolError as exc:
            self.transfers.fail(session, exc)
            return
        if action is protocol.Action.DATA:
            session.queue.put_nowait(event)
        elif action is protocol.Action.CREDIT:
            session.credit_arrived.set()
        elif action is protocol.Action.CANCEL:
            self.transfers.end(session)
        elif action is protocol.Action.NEXT_PAGE:
            self.transfers.next_page(session, event)

    def _refuse(self, inc: Incoming, exc: ProtocolError) -> None:
        tid = exc.transfer_id
        session = self.transfers.sessions.get((inc.identity, tid)) if tid is not None else None
        if session is not None:
            self.transfers.fail(session, exc)
        else:
            self.transfers.reply(inc.identity, Error(-1 if tid is None else tid, exc.code.value, str(exc)))

    def _open(self, inc: Incoming, event: Event) -> None:
        action = protocol.action_for(event)
        if action in (protocol.Action.CREDIT, protocol.Action.CANCEL):
            return  # late credit or cancel for a transfer already over: harmless
        if action is not protocol.Action.OPEN and (inc.identity, event.id) in self._ending:
            return  # sent before the peer heard its transfer ended; the ERROR is on its way
        if action is not protocol.Action.OPEN:
            self.transfers.reply(
                inc.identity,
                Error(event.id, ErrorCode.BAD_REQUEST.value, f"no transfer {event.id} is open for {event.TYPE}"),
            )
            return
        if self._draining:
            self.transfers.reply(inc.identity, Error(event.id, ErrorCode.BUSY.value, "the daemon is shutting down"))
            return
        if self.config.read_only and readonly.changes_store(event):
            log.info("peer=%s %s refused: read-only", inc.peer or "?", event.TYPE)
            self.transfers.reply(inc.identity, readonly.refusal(event))
            return
        if not isinstance(event, (ListRequest, Check, Ping)):
            total, mine = self.transfers.running(inc.peer_key or inc.identity)
            # The client's own cap first: a request it refuses must not end another's stream.
            if mine >= self.config.max_transfers_per_peer:
                msg = (
                    f"this client already runs {mine} transfers, the most the daemon allows one client "
                    "(max_transfers_per_peer); try again when one ends"
                )
                self.transfers.reply(inc.identity, Error(event.id, ErrorCode.BUSY.value, msg))
                return
            if total >= self.config.max_transfers and not self._make_room():
                msg = f"{self.config.max_transfers} transfers are running; try again shortly"
                self.transfers.reply(inc.identity, Error(event.id, ErrorCode.BUSY.value, msg))
                return
        transfer = protocol.Transfer(protocol.Role.SERVER, event.id)
        try:
            transfer.receive(event)
        except RemoteProtocolError as exc:
            self.transfers.reply(inc.identity, Error(event.id, exc.code.value, str(exc)))
            return
        self.transfers.start(inc, transfer, event)

    def _make_room(self) -> bool:
        """Every slot is taken: end the stream that has stalled longest under
        ``min_rate`` while waiting on its peer (an upload keeps its partial),
        so that many silent or trickling connections cannot keep honest
        requests out for an idle timeout.  False when every stream keeps up."""
        found = self.transfers.slowest_stalled(time.monotonic())
        if found is None:
            return False
        session, moved, seconds = found
        why = (
            f"transfer moved {moved} bytes in {seconds:.0f} s, under the daemon's minimum of "
            f"{self.config.min_rate} bytes/s, while every slot was wanted; ended (an upload can resume)"
        )
        log.info("transfer %d from %s ended to make room: %s", session.transfer.id, session.peer or "?", why)
        self.transfers.end(session)
        self.transfers.reply(session.identity, Error(session.transfer.id, ErrorCode.BAD_REQUEST.value, why))
        return True

    async def _sweep_idle(self) -> None:
        """End transfers whose peer has been silent for ``idle_timeout`` seconds
        (a client killed mid-transfer), or whose stream moved under
        ``min_rate`` bytes/s over the last ``idle_timeout`` seconds while it
        waited on its peer (a client trickling bytes to hold a slot): frees
        their memory and slot; an upload keeps its partial for resume."""
        period = min(1.0, self.config.idle_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            ended: list[tuple[Session, str]] = []
            for session in list(self.transfers.sessions.values()):
                waiting_on_peer = session.task is None or session.task.done() or session.waits_on_peer()
                if waiting_on_peer and now - session.last_heard > self.config.idle_timeout:
                    why = "transfer idle for too long"
                    log.info(
                        "transfer %d from %s idle for %.0f s: ending it",
                        session.transfer.id,
                        session.peer or "?",
                        self.config.idle_timeout,
                    )
                elif (moved := self.transfers.too_slow(session, now)) is not None:
                    why = (
                        f"transfer moved {moved} bytes in the last {self.config.idle_timeout:g} s, under the "
                        f"daemon's minimum of {self.config.min_rate} bytes/s; ended (an upload can resume)"
                    )
                    log.info("transfer %d from %s too slow: %s", session.transfer.id, session.peer or "?", why)
                else:
                    continue
                self.transfers.end(session)
                ended.append((session, why))
                self._ending.add((session.identity, session.transfer.id))
            # Tell the peers once their uploads have released their partials, so
            # that one resuming at once is not answered busy.
            tasks = [s.task for s, _ in ended if s.task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=self.config.idle_timeout)
            for session, why in ended:
                self._ending.discard((session.identity, session.transfer.id))
                self.transfers.reply(session.identity, Error(session.transfer.id, ErrorCode.BAD_REQUEST.value, why))

    async def _watch_store(self) -> None:
        """Stop, exit status 1, once the store is lost (Store.lost: a local
        root, or its catalog, deleted or moved under the daemon): serving on
        would list files that are gone, or record new ones where no start
        would find them, and under systemd the restart
        (Restart=on-failure) opens the store afresh at its path.  What can
        be put back in a store that is not lost (Store.mend: a partials'
        directory, or the catalog's write-ahead log, deleted) is."""
        while True:
            await asyncio.sleep(STORE_WATCH_PERIOD)
            why = await asyncio.to_thread(self.store.lost)
            if why is not None:
                log.error("%s: stopping", why)
                self._exit_status = 1
                if not self._draining:  # a drain under way goes on: a second call would cut it short
                    self.handle_exit()
                return
            # Only in a store still there: never a directory made inside a root that replaced it.
            if (mended := await asyncio.to_thread(self.store.mend)) is not None:
                log.warning("%s", mended)

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


__all__ = ["Server", "ServerConfig", "check_bind"]
