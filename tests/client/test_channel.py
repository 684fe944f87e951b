"""A transfer's channel, without a daemon: a stand-in socket records what is sent."""

from __future__ import annotations

import asyncio

import pytest

from zfile.client.channel import Channel, error_code
from zfile.errors import AuthFailed, ErrorCode, PeerTimeout, RemoteError, RemoteProtocolError, TransportError
from zfile.protocol.events import Cancel, Chunk, Credit, Error, Get, GetMeta, ListPage, ListRequest
from zfile.protocol.machine import State


class FakeSocket:
    endpoint = "tcp://127.0.0.1:1"

    def __init__(self, refused: AuthFailed | None = None, stall: bool = False, no_zmtp: bool = False) -> None:
        self.sent: list[object] = []
        self.refused = refused
        self.stall = stall
        self.no_zmtp = no_zmtp

    def link_failure(self) -> AuthFailed | None:
        return self.refused

    def speaks_no_zmtp(self) -> bool:
        return self.no_zmtp

    async def send(self, event, *, track=False, timeout=None):
        if self.stall:
            raise TimeoutError
        self.sent.append(event)
        return "tracker" if track else None


def channel(sock: FakeSocket, timeout: float = 5.0) -> tuple[Channel, list[int]]:
    released: list[int] = []
    return Channel(sock, 7, timeout=timeout, release=released.append), released  # type: ignore[arg-type]


META = GetMeta(7, "a.bin", 10, 0, 0o644, "blake3", b"d" * 32, 0)


async def test_send_and_next_advance_the_transfer():
    sock = FakeSocket()
    ch, _ = channel(sock)
    await ch.send(Get(7, "a.bin", 1 << 20))
    assert ch.transfer.state is State.GET_OPENING and sock.sent == [Get(7, "a.bin", 1 << 20)]
    ch.deliver(META)
    assert await ch.next() == META
    assert ch.transfer.state is State.GET_RECEIVING and ch.transfer.size == 10
    ch.deliver(Chunk(7, 0, b"x" * 10))
    await ch.next()
    assert ch.transfer.finished


async def test_track_returns_the_sockets_tracker():
    ch, _ = channel(FakeSocket())
    assert await ch.send(ListRequest(7, "", "", 10), track=True) == "tracker"


async def test_error_is_raised_with_its_code():
    ch, _ = channel(FakeSocket())
    await ch.send(Get(7, "gone.bin", 1 << 20))
    ch.deliver(Error(7, "not-found", "gone.bin: no such file"))
    with pytest.raises(RemoteError) as info:
        await ch.next()
    assert info.value.code is ErrorCode.NOT_FOUND and "no such file" in str(info.value)
    assert error_code("from-the-future") is ErrorCode.INTERNAL


async def test_delivered_exception_is_raised():
    ch, _ = channel(FakeSocket())
    ch.deliver(RemoteProtocolError("garbled", transfer_id=7))
    with pytest.raises(RemoteProtocolError):
        await ch.next()


async def test_silence_is_a_peer_timeout():
    ch, _ = channel(FakeSocket(), timeout=0.05)
    await ch.send(ListRequest(7, "", "", 10))
    with pytest.raises(PeerTimeout, match="no answer from tcp://127.0.0.1:1 within 0.05 s"):
        await ch.next()


async def test_a_peer_that_took_the_connection_but_no_handshake_is_said_so():
    ch, _ = channel(FakeSocket(no_zmtp=True), timeout=0.05)
    await ch.send(ListRequest(7, "", "", 10))
    with pytest.raises(PeerTimeout, match="took the connection but completed no ZeroMQ handshake within 0.05 s"):
        await ch.next()


async def test_refused_handshake_shows_instead_of_a_timeout():
    refused = AuthFailed("the key was refused")
    ch, _ = channel(FakeSocket(refused=refused, stall=True), timeout=0.05)
    with pytest.raises(AuthFailed) as info:
        await ch.send(ListRequest(7, "", "", 10))
    assert info.value is refused


async def test_pending_applies_credit_without_waiting():
    ch, _ = channel(FakeSocket())
    await ch.send(Get(7, "a.bin", 4))
    ch.deliver(META)
    await ch.next()
    ch.pending()  # nothing there: returns at once
    ch.deliver(Chunk(7, 0, b"x" * 4))
    ch.pending()
    assert ch.transfer.offset == 4
    ch.deliver(Error(7, "internal", "disk on fire"))
    with pytest.raises(RemoteError):
        ch.pending()


async def test_close_cancels_an_unfinished_transfer_once():
    sock = FakeSocket()
    ch, released = channel(sock)
    async with ch:
        await ch.send(ListRequest(7, "", "", 10))
    await ch.close()
    assert sock.sent[-1] == Cancel(7) and sock.sent.count(Cancel(7)) == 1
    assert released == [7]


async def test_close_after_a_finished_transfer_sends_nothing():
    sock = FakeSocket()
    ch, released = channel(sock)
    await ch.send(ListRequest(7, "", "", 10))
    ch.deliver(ListPage(7, (), False))
    await ch.next()
    await ch.close()
    assert Cancel(7) not in sock.sent and released == [7]


async def test_a_failed_socket_is_raised_and_gets_no_cancel():
    sock = FakeSocket()
    ch, _ = channel(sock)
    await ch.send(Get(7, "a.bin", 1 << 20))
    ch.fail(TransportError("receive failed"))
    with pytest.raises(TransportError, match="receive failed"):
        await ch.next()
    await ch.close()
    assert Cancel(7) not in sock.sent


async def test_credit_is_counted_by_the_transfer():
    ch, _ = channel(FakeSocket())
    await ch.send(Get(7, "a.bin", 4))
    ch.deliver(META)
    await ch.next()
    await ch.send(Credit(7, 6))
    assert ch.transfer.credit == 10


async def test_a_cancel_as_an_event_arrives_is_not_lost():
    """Ctrl-C cancels the command's task (asyncio.run's SIGINT handler); an
    event delivered in the same turn of the loop must neither swallow the
    cancellation (Python 3.11's ``asyncio.wait_for`` did: the command went
    on and waited out its timeout) nor be lost itself."""
    ch, _ = channel(FakeSocket())
    await ch.send(Get(7, "a.bin", 1 << 20))
    waiting = asyncio.create_task(ch.next())
    for _ in range(3):
        await asyncio.sleep(0)  # blocked on the empty inbox
    ch.deliver(META)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await ch.next() == META
