"""A refusal sent while the peer's pipe is full waits for room instead of
being dropped (zfile.server.replies): one client with more transfers than
the daemon allows it gets every ``busy`` answer, however busy its pipe."""

from __future__ import annotations

import asyncio
import time

import pytest

from zfile.client.client import Client
from zfile.protocol.events import Chunk, Error, Get, Put

from ..conftest import start_daemon
from ..rawpeer import MTIME_NS, MiB, RawPeer, make_file

pytestmark = pytest.mark.slow


def test_a_busy_answer_reaches_a_peer_whose_pipe_was_full(tmp_path):
    src = make_file(tmp_path / "big.bin", 48 * MiB)
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--max-transfers-per-peer", "2")
    try:

        async def seed() -> None:
            async with Client(d.endpoint) as client:
                await client.put(src, "big.bin")

        asyncio.run(seed())
        with RawPeer(d.endpoint, rcvhwm=1, rcvbuf=64 << 10) as peer:
            # Two downloads the peer does not read fill the daemon's pipe to it.
            peer.send_event(Get(1, "big.bin", 48 * MiB))
            peer.send_event(Get(2, "big.bin", 48 * MiB))
            time.sleep(1.0)
            peer.send_event(Put(3, "more.bin", 2 * MiB, MTIME_NS, 0o644, "blake3"))  # over the limit: busy
            time.sleep(0.5)
            received = {1: 0, 2: 0}
            refusal = None
            deadline = time.monotonic() + 60
            while refusal is None or received[1] + received[2] < 96 * MiB:
                assert time.monotonic() < deadline, (refusal, received)
                event = peer.recv_event(timeout=30)
                if isinstance(event, Chunk):
                    received[event.id] += len(event.data)
                elif isinstance(event, Error) and event.id == 3:
                    refusal = event
        assert refusal.code == "busy", refusal
        assert received == {1: 48 * MiB, 2: 48 * MiB}
    finally:
        assert d.stop() == 0, d.log_text()
