"""The transport boundary: the only module that touches ZeroMQ.

It binds a ROUTER socket for the daemon and connects a DEALER socket for the
client, turns frames into protocol events and back, and maps foreign
exceptions (``zmq.ZMQError``) to zfile's own (:mod:`zfile.errors`) so callers
see only zfile errors.

Two traps are designed out here (ZeroMQ Guide chapter 7; libzmq #2037):

- a ROUTER socket silently drops a message to a peer whose pipe is full.  The
  server socket sets ``ROUTER_MANDATORY`` and sends with ``NOBLOCK``, so a
  full pipe is reported (``send`` returns False) and an unknown or vanished
  peer raises :class:`PeerGone`; one slow peer never stalls the server;
- ``zmq.asyncio`` sockets must be created inside the running event loop
  (pyzmq #1760): both sockets are made by async factory functions.

With CurveZMQ (RFC 26) the server socket sets ``CURVE_SERVER`` before it
binds and runs a ZAP handler (RFC 27, pyzmq's ``AsyncioAuthenticator``) on its
own context, where the handler's ``inproc://zeromq.zap.01`` endpoint must live;
the handler lets in only the keys of :class:`zfile.auth.AuthorizedKeys`.  Each
received message carries the authenticated key as its ``User-Id`` property.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from zfile import protocol
from zfile.errors import AuthFailed, PeerGone, PeerUnreachable, RemoteProtocolError, TransportError
from zfile.protocol.events import Event
from zfile.transport.context import client_context

if TYPE_CHECKING:
    # CURVE support is imported when a socket uses it: a plain client's start-up skips it.
    from zmq.auth.asyncio import AsyncioAuthenticator

    from zfile.transport.curve import AuthorizedKeys, KeyPair

__all__ = ["ClientCurve", "ClientSocket", "Incoming", "LinkDown", "ServerCurve", "ServerSocket"]

# ZMTP heartbeats (libzmq 4.2+) let a connection notice a dead peer; the
# application keeps its own idle timeout per transfer as well.
_HEARTBEAT_IVL_MS = 5_000
_HEARTBEAT_TIMEOUT_MS = 15_000
# High-water marks in messages.  Credit bounds what is in flight per
# transfer, so these only need to exceed (transfers x window / chunk).
_HWM = 100_000
# The daemon's send pipe to one peer, in messages.  A client that grants a
# large credit and then stops reading (its receive pipe full) leaves the
# daemon's messages queued here; this bounds that memory to about
# _SERVER_SNDHWM x chunk size per peer.  An honest client's own receive
# pipe (_HWM) absorbs what credit lets through, so this pipe stays near empty.
_SERVER_SNDHWM = 32
# Monitor events that mean the daemon will not talk to this client as it is.
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
# ... and those that tell a link that is up from one that is not.  libzmq
# reports a refused TCP connect or a missing ipc socket as CLOSED then
# CONNECT_RETRIED (about every 100-200 ms), long before any timeout; a SYN that
# goes unanswered shows no event at all, so a silent host keeps the timeout.
_LINK_EVENTS = _HANDSHAKE_FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_DISCONNECTED

#: Called by a :class:`ClientSocket` with the error that ends every transfer
#: in flight: the daemon refused the handshake, cannot be reached, or the
#: connection to it was lost.
LinkDown = Callable[[TransportError], None]


# Frames of an over-long message dropped between two turns of the event loop.
_DISCARD_BATCH = 4096

# What ServerSocket._send returns when the peer's pipe is full.
_FULL = object()


def _peer_address(frame: zmq.Frame) -> str:
    try:
        return frame.get("Peer-Address") or ""
    except zmq.ZMQError:
        return ""


def _transport_error(what: str, exc: zmq.ZMQError) -> TransportError:
    return TransportError(f"{what}: {exc.strerror}")


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message received by the server.

    ``identity`` is the ROUTER's routing id for the peer; ``peer`` its address
    as libzmq reports it ("" when unknown); ``event`` the decoded event, or
    ``error`` the :class:`RemoteProtocolError` that decoding raised;
    ``peer_key`` the Z85 public key the peer authenticated with under CURVE
    ("" without CURVE).
    """

    identity: bytes
    peer: str
    event: Event | None
    error: RemoteProtocolError | None
    peer_key: str = ""


@dataclass(frozen=True, slots=True)
class ServerCurve:
    """CURVE for the daemon: its own key pair and the client keys it serves."""

    keypair: KeyPair
    authorized: AuthorizedKeys


@dataclass(frozen=True, slots=True)
class ClientCurve:
    """CURVE for a client: the daemon's Z85 public key and the client's key pair."""

    server_key: bytes
    keypair: KeyPair


class ServerSocket:
    """A bound ROUTER socket speaking zfile events.  Make with :meth:`bind`."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        sock: zmq.asyncio.Socket,
        endpoint: str,
        authenticator: AsyncioAuthenticator | None = None,
    ) -> None:
        self._ctx = ctx
        self._sock = sock
        # The same socket, read frame by frame without a future per frame
        # once the first frame of a message has arrived (see recv).
        self._frames = zmq.Socket.shadow(sock.underlying)
        self._authenticator = authenticator
        self.endpoint = endpoint

    @classmethod
    async def bind(cls, endpoint: str, *, curve: ServerCurve | None = None, max_frame_bytes: int = -1) -> ServerSocket:
        """Bind a ROUTER socket to ``endpoint``; ``tcp://host:*`` picks a free port.

        With ``curve`` the socket is a CURVE server that serves only clients
        whose key is in ``curve.authorized`` (consulted at each handshake, so
        replacing its keys takes effect for the next connection).
        ``max_frame_bytes`` (-1: no limit) is set as ``ZMQ_MAXMSGSIZE``
        (zmq_setsockopt(3)): libzmq checks each incoming frame's declared
        length before it allocates it and drops the connection of a peer
        whose frame is longer, so such a frame never reaches the daemon's
        memory.  Raises :class:`TransportError` when the address is in use
        or invalid.
        """
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.ROUTER)
        authenticator = None
        try:
            if curve is not None:
                from zmq.auth.asyncio import AsyncioAuthenticator

                authenticator = AsyncioAuthenticator(ctx)
                authenticator.start()
                authenticator.configure_curve_callback("*", curve.authorized)
                # Must be set before bind: the option applies to connections
                # accepted afterwards (zmq_curve(7)).
                sock.curve_secretkey = curve.keypair.secret
                sock.curve_publickey = curve.keypair.public
                sock.curve_server = True
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
            sock.setsockopt(zmq.SNDHWM, _SERVER_SNDHWM)
            sock.setsockopt(zmq.RCVHWM, _HWM)
            sock.setsockopt(zmq.HEARTBEAT_IVL, _HEARTBEAT_IVL_MS)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, _HEARTBEAT_TIMEOUT_MS)
            sock.bind(endpoint)
            bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            if authenticator is not None:
                authenticator.stop()
            ctx.term()
            raise _transport_error(f"cannot bind {endpoint}", exc) from None
        return cls(ctx, sock, bound, authenticator)

    async def recv(self) -> Incoming:
        """Wait for the next message from any peer.

        Raises :class:`TransportError` if the socket fails (not for a malformed
        message: that comes back as ``Incoming.error``).
        """
        try:
            frames = [await self._sock.recv(copy=False)]
            # libzmq delivers a multipart message whole, so once its first
            # frame is here the rest are too and can be read without waiting.
            # getsockopt, not the rcvmore attribute: pyzmq's attribute lookup
            # costs more than the read of a small frame.
            more, recv, rcvmore = self._frames.getsockopt, self._frames.recv, zmq.RCVMORE
            # Identity, frame 0 and a first data frame (a CHUNK's, kept zero-copy)
            # as zmq Frames; a PUT-MANY's further data frames are copied into
            # bytes as they are read, so that libzmq's copy of each is freed at
            # once instead of both copies of the whole message living together.
            copied: list[bytes] = []
            while more(rcvmore):
                if len(frames) + len(copied) > protocol.MAX_FRAMES:
                    extra = await self._discard_rest()
                    count = len(frames) + len(copied) - 1 + extra
                    error = RemoteProtocolError(
                        f"message has {count} frames; at most {protocol.MAX_FRAMES} frames are allowed"
                    )
                    return Incoming(frames[0].bytes, _peer_address(frames[0]), None, error)
                if len(frames) < 3:
                    frames.append(recv(zmq.NOBLOCK, copy=False))
                else:
                    copied.append(recv(zmq.NOBLOCK))
        except zmq.ZMQError as exc:
            raise _transport_error("receive failed", exc) from None
        identity = frames[0].bytes
        peer = _peer_address(frames[0])
        peer_key = ""
        if self._authenticator is not None:
            try:
                peer_key = frames[0].get("User-Id") or ""
            except zmq.ZMQError:
                pass
        # Small frames are copied into bytes (cheaper than a memoryview's
        # bookkeeping); large ones stay zero-copy views of libzmq's buffer.
        body = [f.bytes if len(f) < zmq.COPY_THRESHOLD else f.buffer for f in frames[1:]]
        body += copied
        try:
            return Incoming(identity, peer, protocol.decode(body), None, peer_key)
        except RemoteProtocolError as exc:
            return Incoming(identity, peer, None, exc, peer_key)

    async def _discard_rest(self) -> int:
        """Read and drop what is left of a message that has too many frames;
        return how many frames that was.  Frames are dropped in batches with
        the event loop let run between them, so a message of a million empty
        frames (a few MB on the wire) does not stop every other transfer
        while it is read."""
        count = 0
        while self._frames.rcvmore:
            self._frames.recv(zmq.NOBLOCK)
            count += 1
            if count % _DISCARD_BATCH == 0:
                await asyncio.sleep(0)
        return count

    def send(self, identity: bytes, event: Event) -> bool:
        """Send ``event`` to the peer ``identity`` without blocking.

        Returns False when that peer's pipe is full (it is not reading);
        raises :class:`PeerGone` when the peer is not connected and
        :class:`TransportError` on other socket failures.
        """
        return self._send(identity, event, False) is not _FULL

    def send_tracked(self, identity: bytes, event: Event) -> zmq.MessageTracker | None:
        """:meth:`send`, for an event whose data frame the caller will reuse:
        returns the send's tracker, whose ``done`` turns true once libzmq has
        released the frame, or None when the peer's pipe is full."""
        sent = self._send(identity, event, True)
        return None if sent is _FULL else sent

    def _send(self, identity: bytes, event: Event, track: bool) -> object:
        frames = [identity, *protocol.encode(event)]
        try:
            sent = self._sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False, track=track)
            # A zmq.asyncio NOBLOCK send does not raise: it returns a Future that
            # already holds EAGAIN or EHOSTUNREACH.  Unread, that error would be
            # lost and the message silently dropped.
            failure = sent.exception() if sent.done() else None
            if failure is not None:
                raise failure
        except zmq.Again:
            return _FULL
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                raise PeerGone(f"peer {identity.hex()} is gone") from None
            raise _transport_error("send failed", exc) from None
        return sent.result()

    def close(self, linger_s: float = 1.0) -> None:
        """Close the socket, giving queued replies ``linger_s`` seconds to leave."""
        self._sock.close(linger=int(linger_s * 1000))
        if self._authenticator is not None:
            self._authenticator.stop()
        self._ctx.term()


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
            sock.setsockopt(zmq.SNDHWM, _HWM)
            sock.setsockopt(zmq.RCVHWM, _HWM)
            sock.setsockopt(zmq.HEARTBEAT_IVL, _HEARTBEAT_IVL_MS)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, _HEARTBEAT_TIMEOUT_MS)
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            if monitor is not None:
                monitor.close(linger=0)
            sock.close(linger=0)
            raise _transport_error(f"cannot connect to {endpoint}", exc) from None
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
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._up = True
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
                    raise _transport_error(f"send to {self.endpoint} failed", exc) from None
                # A waiting send wakes when the socket turns writable and then
                # tries once: a pipe that came up and went at once (a refused
                # handshake) leaves it EAGAIN, with nothing sent.  Wait again,
                # now for the link's failure, which the monitor reports next.
                failure = self.link_failure()
                if failure is not None:
                    raise failure from None
                continue
            except zmq.ZMQError as exc:
                raise _transport_error(f"send to {self.endpoint} failed", exc) from None
            return tracker if track else None

    async def recv(self) -> Event:
        """Wait for the next event from the daemon.

        Raises :class:`RemoteProtocolError` for a malformed message and
        :class:`TransportError` when the socket fails.
        """
        try:
            frames = await self._sock.recv_multipart(copy=False)
        except zmq.ZMQError as exc:
            raise _transport_error(f"receive from {self.endpoint} failed", exc) from None
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
