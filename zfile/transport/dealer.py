"""The client's side of the transport boundary: a DEALER connected to a daemon.

It turns protocol events into frames and back, maps ``zmq.ZMQError`` to
zfile's errors (:mod:`zfile.errors`), and follows the link from the socket
monitor (zmq_socket_monitor(3)), so that a refused handshake, nobody
listening, a lost connection or a peer that speaks no ZeroMQ end the
transfers waiting on it with a sentence rather than a timeout.  The
ROUTER side and what both share are in :mod:`zfile.transport.sockets`;
``zmq.asyncio`` sockets are made inside the running loop (pyzmq #1760).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from zfile import protocol
from zfile.errors import AuthFailed, PeerUnreachable, TransportError
from zfile.protocol.events import Event
from zfile.transport.context import client_context
from zfile.transport.sockets import HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS, HWM, transport_error

if TYPE_CHECKING:
    from zfile.transport.curve import KeyPair

__all__ = ["ClientCurve", "ClientSocket", "LinkDown"]

# Monitor events that mean the daemon will not talk to this client as it is.
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
# ... and those that tell a link that is up from one that is not.  libzmq
# reports a refused TCP connect or a missing ipc socket as CLOSED then
# CONNECT_RETRIED (about every 100-200 ms), long before any timeout; a SYN that
# goes unanswered shows no event at all, so a silent host keeps the timeout.
# CONNECTED without a HANDSHAKE_SUCCEEDED is a peer that took the TCP
# connection and speaks no ZMTP (another service on the port).
_LINK_EVENTS = (
    _HANDSHAKE_FAILED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECTED
)

#: Called by a :class:`ClientSocket` with the error that ends every transfer
#: in flight: the daemon refused the handshake, cannot be reached, or the
#: connection to it was lost.
LinkDown = Callable[[TransportError], None]


@dataclass(frozen=True, slots=True)
class ClientCurve:
    """CURVE for a client: the daemon's Z85 public key and the client's key pair."""

    server_key: bytes
    keypair: KeyPair


class ClientSocket:
    """A DEALER socket connected to a zfile daemon.  Make with :meth:`connect`."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        sock: zmq.asyncio.Socket,
        endpoint: str,
        monitor: zmq.asyncio.Socket | None = None,
        curve: bool = False,
        on_down: LinkDown | None = None,
    ) -> None:
        self._ctx = ctx
        self._sock = sock
        self._monitor = monitor
        self._curve = curve
        self._on_down = on_down
        self.endpoint = endpoint
        self._refused: AuthFailed | None = None
        self._up = False
        # The TCP connection was made, and a ZMTP handshake ever completed.
        self._connected = False
        self._handshook = False
        # Done, with the error, while the link is down; replaced once it is up again.
        self._down: asyncio.Future[TransportError] = asyncio.get_running_loop().create_future()
        self._watcher = asyncio.create_task(self._watch(), name="zfile-link") if monitor is not None else None

    @classmethod
    async def connect(
        cls, endpoint: str, *, curve: ClientCurve | None = None, on_down: LinkDown | None = None
    ) -> ClientSocket:
        """Connect a DEALER to ``endpoint`` (the connection completes in the
        background).  A send that waits for the connection raises
        :class:`AuthFailed` as soon as the daemon refuses the handshake and
        :class:`PeerUnreachable` as soon as nothing accepts the connection
        (refused, no such ipc socket); a host that does not answer at all
        shows as a :class:`PeerTimeout` on the first answer awaited.
        ``on_down`` is called with the same errors, and with
        :class:`PeerUnreachable` when an established connection is lost, so
        the transfers waiting on it can end at once.  With ``curve`` the
        connection is CurveZMQ-encrypted and authenticated with
        ``curve.keypair``; the daemon must hold ``curve.server_key``.  Raises
        :class:`TransportError`."""
        ctx = client_context()
        sock = ctx.socket(zmq.DEALER)
        monitor = None
        try:
            if curve is not None:
                sock.curve_serverkey = curve.server_key
                sock.curve_publickey = curve.keypair.public
                sock.curve_secretkey = curve.keypair.secret
            monitor = sock.get_monitor_socket(_LINK_EVENTS)
            # Queue nothing on a pipe that is not connected: messages sent
            # into a half-made connection can be lost (docs/protocol.md).
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.SNDHWM, HWM)
            sock.setsockopt(zmq.RCVHWM, HWM)
            sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            if monitor is not None:
                monitor.close(linger=0)
            sock.close(linger=0)
            raise transport_error(f"cannot connect to {endpoint}", exc) from None
        return cls(ctx, sock, endpoint, monitor, curve is not None, on_down)

    async def _watch(self) -> None:
        """Follow the link's state from the socket monitor's events.

        libzmq reports a refused CURVE key as ``HANDSHAKE_FAILED_AUTH`` and a
        mechanism mismatch (CURVE on one side only) or a wrong server key as
        ``HANDSHAKE_FAILED_PROTOCOL`` / ``_NO_DETAIL`` (zmq_socket_monitor(3)).
        The DEALER itself only goes on retrying, so the monitor is the way to
        tell a refusal, or nobody there, from a daemon that is slow.
        """
        assert self._monitor is not None
        while True:
            try:
                event = parse_monitor_message(await self._monitor.recv_multipart())["event"]
            except zmq.ZMQError:
                return
            if event == zmq.EVENT_CONNECTED:
                self._connected = True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._up = self._handshook = True
                if self._down.done():
                    self._down = asyncio.get_running_loop().create_future()
            elif event & _HANDSHAKE_FAILED:
                if self._refused is None:
                    self._refused = self._refusal(event)
                self._fail(self._refused)
            elif event == zmq.EVENT_DISCONNECTED and self._up:
                self._up = False
                self._fail(PeerUnreachable(f"lost the connection to {self.endpoint} (did the daemon stop or restart?)"))
            elif event == zmq.EVENT_CONNECT_RETRIED and not self._up and self._refused is None:
                self._fail(
                    PeerUnreachable(f"nothing accepts connections at {self.endpoint} (is `zfile serve` running there?)")
                )

    def _refusal(self, event: int) -> AuthFailed:
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return AuthFailed(
                f"{self.endpoint} refused this client's CURVE key (not among the daemon's authorized keys)"
            )
        if self._curve:
            return AuthFailed(
                f"the CURVE handshake with {self.endpoint} failed: check the daemon's public key "
                "(--server-key), and that the daemon uses CURVE"
            )
        return AuthFailed(
            f"the ZMTP handshake with {self.endpoint} failed: the daemon requires CURVE "
            "(--server-key and --client-key), or this is not a zfile daemon"
        )

    def _fail(self, exc: TransportError) -> None:
        # Retries repeat every ~150 ms: report a down link once, not each time.
        if self._down.done():
            return
        self._down.set_result(exc)
        if self._on_down is not None:
            self._on_down(exc)

    def link_failure(self) -> TransportError | None:
        """Why the link is down (refused handshake, nothing listening, lost
        connection), or None while it is up or not yet known."""
        if self._refused is not None:
            return self._refused
        return self._down.result() if self._down.done() else None

    def speaks_no_zmtp(self) -> bool:
        """True when a peer took the TCP connection but no ZMTP handshake
        with it has completed (zmq_socket_monitor(3): CONNECTED, never
        HANDSHAKE_SUCCEEDED): another service, or a host too slow to tell."""
        return self._connected and not self._handshook and self._refused is None

    def handshake_failure(self) -> AuthFailed | None:
        """Why the daemon refused the handshake, or None if it has not."""
        return self._refused

    async def send(
        self, event: Event, *, track: bool = False, timeout: float | None = None
    ) -> zmq.MessageTracker | None:
        """Send ``event``; a data frame goes zero-copy (do not mutate it after).

        With ``track`` returns the send's tracker, whose ``done`` turns true
        once libzmq has released the data frame (then it may be reused).
        Waits while the pipe is full or not yet connected, at most
        ``timeout`` seconds (then TimeoutError; None: no limit).  Raises
        :class:`AuthFailed` as soon as the daemon refuses the handshake,
        :class:`PeerUnreachable` as soon as nothing accepts the connection,
        and :class:`TransportError` when the socket fails.
        """
        frames = protocol.encode(event)
        deadline: float | None = None  # set at the first wait: most sends never wait
        while True:
            # pyzmq tries the send at once and returns a finished future when
            # it went; only a send that must wait (no connection yet, or a full
            # pipe) also watches for the link going down, which would block it
            # for good, and only then is a timer set up.
            sending = self._sock.send_multipart(frames, copy=len(frames) == 1, track=track)
            waited = not sending.done()
            if waited:
                left = None
                if timeout is not None:
                    now = asyncio.get_running_loop().time()
                    deadline = now + timeout if deadline is None else deadline
                    left = max(0.0, deadline - now)
                down = self._down
                try:
                    await asyncio.wait((sending, down), timeout=left, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not sending.done():
                        sending.cancel()
                if sending.cancelled():
                    failure = self.link_failure()
                    if failure is not None:
                        raise failure
                    raise TimeoutError(f"send to {self.endpoint} waited over {timeout} s")
            try:
                tracker = sending.result()
            except zmq.Again as exc:
                if not waited:  # not pyzmq's way for a blocking send: no loop on it
                    raise transport_error(f"send to {self.endpoint} failed", exc) from None
                # A waiting send wakes when the socket turns writable and then
                # tries once: a pipe that came up and went at once (a refused
                # handshake) leaves it EAGAIN, with nothing sent.  Wait again,
                # now for the link's failure, which the monitor reports next.
                failure = self.link_failure()
                if failure is not None:
                    raise failure from None
                continue
            except zmq.ZMQError as exc:
                raise transport_error(f"send to {self.endpoint} failed", exc) from None
            return tracker if track else None

    async def recv(self) -> Event:
        """Wait for the next event from the daemon.

        Raises :class:`RemoteProtocolError` for a malformed message and
        :class:`TransportError` when the socket fails.
        """
        try:
            frames = await self._sock.recv_multipart(copy=False)
        except zmq.ZMQError as exc:
            raise transport_error(f"receive from {self.endpoint} failed", exc) from None
        body = [f.bytes if len(f) < zmq.COPY_THRESHOLD else f.buffer for f in frames]
        return protocol.decode(body)

    def close(self, linger_s: float = 1.0) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self._monitor is not None:
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        # The context is the process's (zfile.transport.context): the queued
        # messages leave within the linger after this returns.
        self._sock.close(linger=int(linger_s * 1000))
