"""The HTTP front's stop: an answer already given leaves the process whole
before :meth:`HttpFront.stop` returns, as the daemon exits right after it."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from zfile.http import HttpFront
from zfile.store import LocalStore
from zfile.store.reader import Download

from ..conftest import free_port
from .test_files import put
from .test_limits import answered


def serve_one_get(
    root: Path, port: int, data: bytes, ready: threading.Event, done: threading.Event, failed: list
) -> None:
    """Store ``data`` as ``f.bin``; once one GET is answered (``done``), stop
    the front and end the event loop, as the daemon does at SIGTERM: what
    the transports still held then would never be sent."""

    async def main() -> None:
        store = LocalStore(root, max_file_size=1 << 30)
        await store.open()
        front = HttpFront(store, address=f"127.0.0.1:{port}", shutdown_timeout=30)
        await front.start()
        try:
            async with aiohttp.ClientSession() as http:
                await put(http, front, "f.bin", data)
            ready.set()
            while answered(front, "GET") < 1:
                await asyncio.sleep(0.005)
            done.set()
        finally:
            await front.stop()
            await store.close()

    try:
        asyncio.run(main())
    except BaseException as exc:  # the test's thread reports it
        failed.append(exc)
        ready.set()


@pytest.mark.slow
def test_an_answer_given_is_sent_whole_before_the_stop_returns(tmp_path, monkeypatch):
    # The path of a body written chunk by chunk (TLS, an object store): a
    # plain local file goes by sendfile(2), whose bytes are all in the kernel
    # once the handler returns.
    monkeypatch.setattr(Download, "local_fd", lambda self: None)
    # More than the kernel's buffers hold for a client that reads nothing
    # (about 48 KiB with the options below), less than that plus asyncio's
    # 64 KiB high-water mark: the handler returns with the tail in its transport.
    data = os.urandom(96 << 10)
    port = free_port()
    ready, done, failed = threading.Event(), threading.Event(), []
    server = threading.Thread(target=serve_one_get, args=(tmp_path / "root", port, data, ready, done, failed))
    server.start()
    got = bytearray()
    try:
        assert ready.wait(30) and not failed, failed
        with socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)  # small segments: a small send buffer
            client.settimeout(5)
            client.connect(("127.0.0.1", port))
            client.sendall(b"GET /files/f.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert done.wait(30), failed
            time.sleep(0.3)  # time enough for a stop that does not wait to end the loop
            try:
                while piece := client.recv(65536):
                    got += piece
            except TimeoutError:
                pass  # the tail was lost: the connection stays open with nothing more to come
    finally:
        server.join(30)
    assert not failed, failed
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert len(body) == len(data) and body == data
