"""An HTTP front over an open LocalStore, in the test's event loop, and a raw HTTP/1.1 client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from zfile.http import HttpFront
from zfile.store import LocalStore

from ..conftest import free_port


@pytest.fixture
async def big_store(tmp_path: Path):
    """An open LocalStore under ``tmp_path/root`` taking files up to 1 GiB."""
    s = LocalStore(tmp_path / "root", max_file_size=1 << 30)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def front(big_store):
    """An :class:`HttpFront` on a free loopback port, no tokens; ``front.url`` is its base URL."""
    f = HttpFront(big_store, address=f"127.0.0.1:{free_port()}", shutdown_timeout=5)
    await f.start()
    yield f
    await f.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def raw(port: int, head: str, body: bytes = b"", *, close_early: bool = False) -> tuple[int, bytes]:
    """Send ``head`` (a request line and headers, CRLF added) and ``body`` as
    they are, untouched by any client's normalisation; return the status and
    the response's bytes (``Connection: close`` is added unless ``head``
    has a Connection header).  ``close_early``: hang up after sending, reading nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head += "" if "Connection:" in head else "Connection: close\n"
        writer.write(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)
        await writer.drain()
        if close_early:
            return 0, b""
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    return int(data.split(b" ", 2)[1]), data
