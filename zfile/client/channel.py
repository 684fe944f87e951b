"""One transfer's view of the client's socket: its state machine and its inbox.

:class:`zfile.client.Client` opens a :class:`Channel` per transfer and runs
the one receive loop that :meth:`Channel.deliver` feeds; the code that moves
a transfer's bytes (:mod:`zfile.client.stream`) needs only the channel.
Each channel waits on its own inbox, so no socket ``recv`` is ever cancelled
by a timeout (a cancelled zmq.asyncio ``recv`` can lose a message, pyzmq
#1925).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from zfile.errors import ErrorCode, PeerTimeout, RemoteError, TransportError, ZfileError
from zfile.fileio.chunks import Tracker
from zfile.protocol.events import Cancel, Credit, Error, Event
from zfile.protocol.machine import Role, Transfer
from zfile.transport.dealer import ClientSocket

#: Called with the number of bytes newly transferred.
Progress = Callable[[int], None]


def no_progress(_: int) -> None:
    """The :data:`Progress` callback that reports nowhere."""


class Channel:
    """One transfer (upload, download, listing or batch) on a client socket.

    ``transfer`` is the transfer's :class:`~zfile.protocol.machine.Transfer`
    (id, state, offset, size and credit, all bytes), advanced by every event
    sent or received here.  ``timeout`` is how long (seconds) :meth:`next`
    and :meth:`send` wait before raising :class:`PeerTimeout`; ``release`` is
    called with the transfer id once, when the channel closes.
    """

    def __init__(
        self,
        sock: ClientSocket,
        transfer_id: int,
        *,
        timeout: float,
        release: Callable[[int], object],
    ) -> None:
        self.transfer = Transfer(Role.CLIENT, transfer_id)
        self._sock = sock
        self._timeout = timeout
        self._release = release
        self._inbox: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self._broken = False
        self._closed = False

    @property
    def id(self) -> int:
        """The transfer id every message of this channel carries."""
        return self.transfer.id

    def deliver(self, item: Event | BaseException) -> None:
        """Queue an event from the daemon, or an error to raise from
        :meth:`next` (a malformed message for this transfer)."""
        self._inbox.put_nowait(item)

    def fail(self, exc: TransportError) -> None:
        """The socket failed or was closed: :meth:`next` raises ``exc``, and
        :meth:`close` sends nothing more."""
        self._broken = True
        self._inbox.put_nowait(exc)

    async def send(self, event: Event, *, track: bool = False) -> Tracker | None:
        """Send ``event``; with ``track`` return the tracker of its data frame
        (:meth:`ClientSocket.send`: the frame's buffer may be reused once the
        tracker is done).

        Raises :class:`LocalProtocolError` when the event is out of turn,
        :class:`PeerTimeout` when the socket cannot take it within the
        timeout, :class:`AuthFailed` or :class:`PeerUnreachable` when the
        link is down, :class:`TransportError`.
        """
        self.transfer.send(event)
        # With IMMEDIATE set a send waits for a live connection; bound that wait.
        try:
            return await self._sock.send(event, track=track, timeout=self._timeout)
        except TimeoutError:
            raise self._timeout_error() from None

    async def next(self) -> Event:
        """The transfer's next event from the daemon.

        Raises :class:`RemoteError` for an ERROR, :class:`PeerTimeout` after
        the timeout's seconds of silence (:class:`AuthFailed` or
        :class:`PeerUnreachable` as soon as the link goes down),
        :class:`RemoteProtocolError` for a message out of turn,
        :class:`TransportError` when the socket failed.
        """
        if not self._inbox.empty():  # the common case mid-stream: no timer to set up
            return self._accept(self._inbox.get_nowait())
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns an item
            # that arrives in the turn its caller is cancelled, and Ctrl-C is lost.
            async with asyncio.timeout(self._timeout):
                item = await self._inbox.get()
        except TimeoutError:
            raise self._timeout_error() from None
        return self._accept(item)

    def pending(self, aside: Callable[[Event], None] | None = None) -> None:
        """Apply what already arrived without waiting (credit, or an ERROR,
        raised as :meth:`next` would); events other than CREDIT go to
        ``aside`` when given (a chain upload's CHAIN-RESULTs)."""
        while not self._inbox.empty():
            event = self._accept(self._inbox.get_nowait())
            if aside is not None and not isinstance(event, Credit):
                aside(event)

    async def close(self) -> None:
        """Stop routing events here; an unfinished transfer is cancelled on
        the daemon (CANCEL, sent within a second or not at all)."""
        if self._closed:
            return
        self._closed = True
        self._release(self.transfer.id)
        if not self.transfer.finished and not self._broken:
            # Tell the daemon to stop now rather than after its idle timeout.
            cancel = Cancel(self.transfer.id)
            with contextlib.suppress(ZfileError, TimeoutError):
                self.transfer.send(cancel)
                async with asyncio.timeout(1.0):
                    await self._sock.send(cancel)

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _accept(self, item: Event | BaseException) -> Event:
        if isinstance(item, BaseException):
            raise item
        self.transfer.receive(item)
        if isinstance(item, Error):
            raise RemoteError(item.message, code=error_code(item.code))
        return item

    def _timeout_error(self) -> TransportError:
        down = self._sock.link_failure()
        if down is not None:
            return down
        if self._sock.speaks_no_zmtp():
            return PeerTimeout(
                f"{self._sock.endpoint} took the connection but completed no ZeroMQ handshake within "
                f"{self._timeout:g} s: a daemon there is stopped or hung, or another service has the port"
            )
        return PeerTimeout(
            f"no answer from {self._sock.endpoint} within {self._timeout:g} s (is `zfile serve` running there?)"
        )


def error_code(text: str) -> ErrorCode:
    """The :class:`ErrorCode` of a wire code; an unknown one is ``internal``."""
    try:
        return ErrorCode(text)
    except ValueError:
        return ErrorCode.INTERNAL


__all__ = ["Channel", "Progress", "error_code", "no_progress"]
