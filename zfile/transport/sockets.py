"""The transport boundary, the daemon's side: the package :mod:`zfile.transport`
is the only one that touches ZeroMQ.

This module binds a ROUTER socket for the daemon (the client's DEALER is
:mod:`zfile.transport.dealer`, which shares the heartbeat and high-water
settings and :func:`transport_error` from here), turns frames into protocol
events and back, and maps foreign exceptions (``zmq.ZMQError``) to zfile's
own (:mod:`zfile.errors`) so callers see only zfile errors.

Two traps are designed out here (ZeroMQ Guide chapter 7; libzmq #2037):

- a ROUTER socket silently drops a message to a peer whose pipe is full.  The
  server socket sets ``ROUTER_MANDATORY`` and sends with ``NOBLOCK``, so a
  full pipe is reported (``send`` returns False) and an unknown or vanished
  peer raises :class:`PeerGone`; one slow peer never stalls the server;
- ``zmq.asyncio`` sockets must be created inside the running event loop
  (pyzmq #1760): both sides' sockets are made by async factory functions.

With CurveZMQ (RFC 26) the server socket sets ``CURVE_SERVER`` before it
binds and runs a ZAP handler (RFC 27, pyzmq's ``AsyncioAuthenticator``) on its
own context, where the handler's ``inproc://zeromq.zap.01`` endpoint must live;
the handler lets in only the keys of :class:`zfile.auth.AuthorizedKeys`.  Each
received message carries the authenticated key as its ``User-Id`` property.
"""

from __future__ import annotations

import asyncio
import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

import zmq
import zmq.asyncio

from zfile import protocol
from zfile.errors import PeerGone, RemoteProtocolError, TransportError
from zfile.protocol.events import Event

if TYPE_CHECKING:
    # CURVE support is imported when a socket uses it: a plain client's start-up skips it.
    from zmq.auth.asyncio import AsyncioAuthenticator

    from zfile.transport.curve import AuthorizedKeys, KeyPair

__all__ = [
    "HEARTBEAT_IVL_MS",
    "HEARTBEAT_TIMEOUT_MS",
    "HWM",
    "Incoming",
    "ServerCurve",
    "ServerSocket",
    "transport_error",
]

# ZMTP heartbeats (libzmq 4.2+) let a connection notice a dead peer; the
# application keeps its own idle timeout per transfer as well.
HEARTBEAT_IVL_MS = 5_000
HEARTBEAT_TIMEOUT_MS = 15_000
# High-water marks in messages.  Credit bounds what is in flight per
# transfer, so these only need to exceed (transfers x window / chunk).
HWM = 100_000
# The daemon's send pipe to one peer, in messages.  A client that grants a
# large credit and then stops reading (its receive pipe full) leaves the
# daemon's messages queued here; this bounds that memory to about
# _SERVER_SNDHWM x chunk size per peer.  An honest client's own receive
# pipe (HWM) absorbs what credit lets through, so this pipe stays near empty.
_SERVER_SNDHWM = 32
# Frames of an over-long message dropped between two turns of the event loop.
_DISCARD_BATCH = 4096

# What ServerSocket._send returns when the peer's pipe is full.
_FULL = object()


def _peer_address(frame: zmq.Frame) -> str:
    try:
        return frame.get("Peer-Address") or ""
    except zmq.ZMQError:
        return ""


def transport_error(what: str, exc: zmq.ZMQError) -> TransportError:
    """``exc`` as the TransportError of ``what`` failing."""
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
            sock.setsockopt(zmq.RCVHWM, HWM)
            sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
            sock.bind(endpoint)
            bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            if authenticator is not None:
                authenticator.stop()
            ctx.term()
            raise transport_error(f"cannot bind {endpoint}", exc) from None
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
            raise transport_error("receive failed", exc) from None
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
            raise transport_error("send failed", exc) from None
        return sent.result()

    def close(self, linger_s: float = 1.0) -> None:
        """Close the socket, giving queued replies ``linger_s`` seconds to leave."""
        self._sock.close(linger=int(linger_s * 1000))
        if self._authenticator is not None:
            self._authenticator.stop()
        self._ctx.term()
