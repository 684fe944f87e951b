"""A forwarding hop's link to the next node of a chain (zfile.server.forward).

One DEALER of the hop's own (:class:`~zfile.transport.dealer.ClientSocket`)
and one upload on it, run by a client-role
:class:`~zfile.protocol.machine.Transfer`.  CHAIN-RESULTs the node sends
about the nodes after it are handed to a callback, so the hop can relay them
upstream.  Offsets and credit are bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from zfile.errors import (
    ErrorCode,
    IntegrityError,
    PeerTimeout,
    RemoteError,
    RemoteProtocolError,
    TransportError,
    ZfileError,
)
from zfile.protocol.credit import next_piece
from zfile.protocol.events import Buffer, Cancel, ChainResult, Chunk, Credit, Error, Event, Put, PutEnd, PutOk, PutReady
from zfile.protocol.machine import Role, Transfer
from zfile.transport.dealer import ClientCurve, ClientSocket

# The one transfer id of a successor link: each link is its own DEALER.
_LINK_ID = 1


def _code(text: str) -> ErrorCode:
    try:
        return ErrorCode(text)
    except ValueError:
        return ErrorCode.INTERNAL


class Successor:
    """This hop's link to the next node: a DEALER of its own and one upload on it.

    ``endpoint`` is the node, ``rest`` the chain after it; ``offset`` is the
    next byte the node expects (byte offset), ``window`` its window (its
    first grant, or ``window`` given, this hop's own, when larger) and
    ``granted_end`` where its grants end (bytes).  CHAIN-RESULTs it sends
    about the nodes after it go to ``on_result``.  ``timeout`` seconds of
    silence while waiting is a :class:`PeerTimeout`; a node that dies or
    stops answering ZMTP heartbeats shows sooner, as the link going down.
    """

    def __init__(
        self,
        endpoint: str,
        rest: tuple[str, ...],
        timeout: float,
        on_result: Callable[[ChainResult], Awaitable[None]],
        window: int,
    ) -> None:
        self.endpoint = endpoint
        self.rest = rest
        self.timeout = timeout
        self.on_result = on_result
        self.transfer = Transfer(Role.CLIENT, _LINK_ID)
        self.inbox: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self.offset = 0
        # A node that took an upload over grants less than its window at
        # first: the window assumed is at least this hop's own.
        self.window = window
        self.granted_end = 0
        self.sock: ClientSocket | None = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self, put: Put, origin: str, curve: ClientCurve | None) -> int:
        """Connect and send the PUT (with :attr:`rest` as its chain); return
        the node's resume offset.  ZfileError when it cannot be reached or
        refuses."""
        self.sock = await ClientSocket.connect(self.endpoint, curve=curve, on_down=self.inbox.put_nowait)
        self._reader = asyncio.create_task(self._receive(), name="zfile-forward-receive")
        await self._send(
            Put(
                _LINK_ID,
                put.name,
                put.size,
                put.mtime_ns,
                put.mode,
                put.algo,
                put.clobber,
                chain=self.rest,
                origin=origin,
            )
        )
        while not isinstance(ready := await self.next(), PutReady):
            pass
        self.offset = ready.offset
        self.window = max(ready.credit, self.window)
        self.granted_end = ready.offset + ready.credit
        return ready.offset

    async def _receive(self) -> None:
        assert self.sock is not None
        while True:
            try:
                event = await self.sock.recv()
            except RemoteProtocolError as exc:
                self.inbox.put_nowait(exc)
                continue
            except TransportError as exc:
                self.inbox.put_nowait(exc)
                return
            self.inbox.put_nowait(event)

    async def _send(self, event: Event) -> None:
        assert self.sock is not None
        self.transfer.send(event)
        try:
            await self.sock.send(event, timeout=self.timeout)
        except TimeoutError:
            raise self.sock.link_failure() or PeerTimeout(
                f"{self.endpoint} took nothing for {self.timeout:g} s"
            ) from None

    async def _take(self, item: Event | BaseException) -> Event | None:
        if isinstance(item, BaseException):
            raise item
        self.transfer.receive(item)
        if isinstance(item, Error):
            raise RemoteError(item.message, code=_code(item.code))
        if isinstance(item, ChainResult):
            await self.on_result(item)
            return None
        if isinstance(item, Credit):
            self.granted_end += item.credit
        return item

    async def next(self) -> Event:
        """The node's next answer but CHAIN-RESULTs (handed to ``on_result``)."""
        while True:
            try:
                # Not wait_for, which in Python 3.11 can swallow a cancellation (channel.py).
                async with asyncio.timeout(self.timeout):
                    item = await self.inbox.get()
            except TimeoutError:
                assert self.sock is not None
                raise self.sock.link_failure() or PeerTimeout(
                    f"no answer from {self.endpoint} within {self.timeout:g} s"
                ) from None
            event = await self._take(item)
            if event is not None:
                return event

    async def hand(self, offset: int, data: Buffer) -> None:
        """Send what of ``data`` (the file's bytes from ``offset``) the node
        does not hold yet, within its credit; nothing past a gap (the
        caller hands bytes in order from :attr:`offset` or before)."""
        end = offset + len(data)
        if end <= self.offset:
            return
        if offset > self.offset:
            raise IntegrityError(f"{self.endpoint} expects byte {self.offset}, this hop has only from {offset}")
        view = memoryview(data)[self.offset - offset :]
        while view:
            while not self.inbox.empty():
                await self._take(self.inbox.get_nowait())
            n = next_piece(self.transfer.credit, len(view))
            if n == 0:
                await self.next()
                continue
            await self._send(Chunk(_LINK_ID, self.offset, view[:n]))
            self.offset += n
            view = view[n:]

    async def finish(self, digest: bytes) -> PutOk:
        """PUT-END, then the node's PUT-OK (after its CHAIN-RESULTs)."""
        await self._send(PutEnd(_LINK_ID, digest))
        while not isinstance(ok := await self.next(), PutOk):
            pass
        return ok

    def abandon(self) -> None:
        """Close the link without a CANCEL: the node's upload stays live, so
        that the hop before this one can take it over."""
        if self._reader is not None:
            self._reader.cancel()
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def cancel(self) -> None:
        """CANCEL the upload (the node keeps its partial and cancels its own
        successor), then close the link."""
        if self.sock is not None and not self.transfer.finished:
            with contextlib.suppress(ZfileError, TimeoutError):
                cancel = Cancel(_LINK_ID)
                self.transfer.send(cancel)
                async with asyncio.timeout(1.0):
                    await self.sock.send(cancel)
        self.abandon()


__all__ = ["Successor"]
