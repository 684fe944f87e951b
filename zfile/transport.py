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
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import zmq
import zmq.asyncio

from . import protocol
from .errors import PeerTimeout, RemoteProtocolError, TransportError
from .events import Event

__all__ = ["ClientSocket", "Incoming", "PeerGone", "ServerSocket", "PeerTimeout"]

# ZMTP heartbeats (libzmq 4.2+) let a connection notice a dead peer; the
# application keeps its own idle timeout per transfer as well.
_HEARTBEAT_IVL_MS = 5_000
_HEARTBEAT_TIMEOUT_MS = 15_000
# High-water marks in messages.  Credit bounds what is in flight per
# transfer, so these only need to exceed (transfers x window / chunk).
_HWM = 100_000


class PeerGone(TransportError):
    """The ROUTER has no connection to that peer identity (EHOSTUNREACH)."""


def _transport_error(what: str, exc: zmq.ZMQError) -> TransportError:
    return TransportError(f"{what}: {exc.strerror}")


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message received by the server.

    ``identity`` is the ROUTER's routing id for the peer; ``peer`` its address
    as libzmq reports it ("" when unknown); ``event`` the decoded event, or
    ``error`` the :class:`RemoteProtocolError` that decoding raised.
    """

    identity: bytes
    peer: str
    event: Event | None
    error: RemoteProtocolError | None


class ServerSocket:
    """A bound ROUTER socket speaking zfile events.  Make with :meth:`bind`."""

    def __init__(self, ctx: zmq.asyncio.Context, sock: zmq.asyncio.Socket, endpoint: str) -> None:
        self._ctx = ctx
        self._sock = sock
        self.endpoint = endpoint

    @classmethod
    async def bind(cls, endpoint: str) -> ServerSocket:
        """Bind a ROUTER socket to ``endpoint``; ``tcp://host:*`` picks a free port.

        Raises :class:`TransportError` when the address is in use or invalid.
        """
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.setsockopt(zmq.SNDHWM, _HWM)
            sock.setsockopt(zmq.RCVHWM, _HWM)
            sock.setsockopt(zmq.HEARTBEAT_IVL, _HEARTBEAT_IVL_MS)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, _HEARTBEAT_TIMEOUT_MS)
            sock.bind(endpoint)
            bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            ctx.term()
            raise _transport_error(f"cannot bind {endpoint}", exc) from None
        return cls(ctx, sock, bound)

    async def recv(self) -> Incoming:
        """Wait for the next message from any peer.

        Raises :class:`TransportError` if the socket fails (not for a malformed
        message: that comes back as ``Incoming.error``).
        """
        try:
            frames = await self._sock.recv_multipart(copy=False)
        except zmq.ZMQError as exc:
            raise _transport_error("receive failed", exc) from None
        identity = frames[0].bytes
        try:
            peer = frames[0].get("Peer-Address") or ""
        except zmq.ZMQError:
            peer = ""
        # Small frames are copied into bytes (cheaper than a memoryview's
        # bookkeeping); large ones stay zero-copy views of libzmq's buffer.
        body = [f.bytes if len(f) < zmq.COPY_THRESHOLD else f.buffer for f in frames[1:]]
        try:
            return Incoming(identity, peer, protocol.decode(body), None)
        except RemoteProtocolError as exc:
            return Incoming(identity, peer, None, exc)

    def send(self, identity: bytes, event: Event) -> bool:
        """Send ``event`` to the peer ``identity`` without blocking.

        Returns False when that peer's pipe is full (it is not reading);
        raises :class:`PeerGone` when the peer is not connected and
        :class:`TransportError` on other socket failures.
        """
        frames = [identity, *protocol.encode(event)]
        try:
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                raise PeerGone(f"peer {identity.hex()} is gone") from None
            raise _transport_error("send failed", exc) from None
        return True

    def close(self, linger_s: float = 1.0) -> None:
        """Close the socket, giving queued replies ``linger_s`` seconds to leave."""
        self._sock.close(linger=int(linger_s * 1000))
        self._ctx.term()


class ClientSocket:
    """A DEALER socket connected to a zfile daemon.  Make with :meth:`connect`."""

    def __init__(self, ctx: zmq.asyncio.Context, sock: zmq.asyncio.Socket, endpoint: str) -> None:
        self._ctx = ctx
        self._sock = sock
        self.endpoint = endpoint

    @classmethod
    async def connect(cls, endpoint: str) -> ClientSocket:
        """Connect a DEALER to ``endpoint`` (the connection completes in the
        background; a daemon that is not there shows as a :class:`PeerTimeout`
        on the first answer awaited).  Raises :class:`TransportError`."""
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.DEALER)
        try:
            # Queue nothing on a pipe that is not connected: messages sent
            # into a half-made connection can be lost (docs/protocol.md).
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.SNDHWM, _HWM)
            sock.setsockopt(zmq.RCVHWM, _HWM)
            sock.setsockopt(zmq.HEARTBEAT_IVL, _HEARTBEAT_IVL_MS)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, _HEARTBEAT_TIMEOUT_MS)
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            ctx.term()
            raise _transport_error(f"cannot connect to {endpoint}", exc) from None
        return cls(ctx, sock, endpoint)

    async def send(self, event: Event) -> None:
        """Send ``event``; a data frame goes zero-copy (do not mutate it after).

        Waits while the pipe is full or not yet connected.  Raises
        :class:`TransportError`.
        """
        frames = protocol.encode(event)
        try:
            await self._sock.send_multipart(frames, copy=len(frames) == 1)
        except zmq.ZMQError as exc:
            raise _transport_error(f"send to {self.endpoint} failed", exc) from None

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
        self._sock.close(linger=int(linger_s * 1000))
        self._ctx.term()
