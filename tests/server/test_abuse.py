"""One peer must not hurt the others: what a single hostile connection can
make the daemon hold or wait for is bounded (issue: message size, slots,
litter).  The hostile side is a raw DEALER (tests/rawpeer.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from zfile.protocol import MAX_FRAMES
from zfile.server.config import ServerConfig
from zfile.server.server import Server

from ..conftest import free_port, start_daemon
from ..rawpeer import MiB, RawPeer, peak_rss_mib

BAD = "bad-request"


def header(**fields) -> bytes:
    return msgpack.packb({"v": 2, **fields})


@pytest.mark.slow
def test_a_frame_over_the_largest_legal_message_is_never_held(tmp_path: Path) -> None:
    """A 256 MiB frame (the protocol's largest legal frame is about 17 MiB)
    costs the daemon no memory: libzmq drops the connection when it reads
    the frame's length, and the daemon serves on."""
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:
        before = peak_rss_mib(daemon.proc.pid)
        with RawPeer(daemon.endpoint) as peer:
            monitor = peer.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            peer.send([header(t="CHUNK", id=1, offset=0), bytes(256 * MiB)])
            # Either the daemon read the frame and answered it, or libzmq cut
            # the connection: wait for whichever comes first.
            poller = zmq.Poller()
            poller.register(peer.sock, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            ready = dict(poller.poll(30_000))
            assert ready, "neither an answer nor a disconnection within 30 s"
            answered = peer.sock in ready
            if monitor in ready:
                assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
            peer.sock.disable_monitor()
            monitor.close(linger=0)
        grown = peak_rss_mib(daemon.proc.pid) - before
        assert not answered, "the daemon read the whole frame"
        assert grown < 64, f"daemon peak RSS grew {grown:.0f} MiB"
        with RawPeer(daemon.endpoint) as other:
            other.send([header(t="LIST", id=2)])
            assert other.recv_event().id == 2
    finally:
        assert daemon.stop() == 0, daemon.log_text()


@pytest.mark.slow
async def test_a_million_frame_message_is_refused_without_stalling_the_daemon(tmp_path: Path) -> None:
    """A message of a million empty frames (a few MB on the wire) is answered
    bad-request naming the frame limit, and the daemon's event loop keeps
    turning while it is read: no other transfer waits seconds for it."""
    server = Server(ServerConfig(bind=f"tcp://127.0.0.1:{free_port()}", root=str(tmp_path / "store")))
    await server.startup()
    try:
        with RawPeer(server.endpoint) as peer:
            # Sent before the measurement starts: the test's own send would
            # hold this process's event loop too.
            peer.send([header(t="PUT-MANY", id=7, algo="blake3", files=[]), *[b""] * 1_000_000])
            longest = 0.0
            deadline = time.monotonic() + 60
            while not peer.sock.poll(0):
                assert time.monotonic() < deadline, "no answer within 60 s"
                began = time.monotonic()
                await asyncio.sleep(0.01)
                longest = max(longest, time.monotonic() - began)
            err = peer.recv_event()
        assert err.code == BAD, err
        assert f"at most {MAX_FRAMES} frames" in err.message, err
        # Reading a million frames at once held the loop for over 3 s.
        assert longest < 1.5, f"the daemon's event loop stood still for {longest:.2f} s"
    finally:
        await server.shutdown()
