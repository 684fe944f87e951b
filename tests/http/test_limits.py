"""The HTTP front's limits: a body that stops coming, a client that stops
reading, too many uploads at once, and the refusal before ``100 Continue``."""

from __future__ import annotations

import asyncio
import os

import pytest

from zfile.errors import NotFound
from zfile.http import HttpFront

from ..conftest import free_port
from .test_files import put


@pytest.fixture
async def strict(big_store, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("wr1ter write\n")
    f = HttpFront(big_store, address=f"127.0.0.1:{free_port()}", idle_timeout=0.5, max_uploads=1, tokens=str(tokens))
    await f.start()
    yield f
    await f.stop()


AUTH = "Authorization: Bearer wr1ter\n"


def answered(front: HttpFront, method: str) -> float:
    """Requests of ``method`` the front has finished answering, whatever their status."""
    return sum(
        sample.value
        for metric in front.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "zfile_http_requests_total" and sample.labels.get("method") == method
    )


async def until(condition, what: str, timeout: float = 30.0) -> None:
    """Wait for ``condition()`` to hold, by its own event and not a time (the
    front runs in this event loop); AssertionError naming ``what`` after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.01)


@pytest.mark.slow
async def test_a_stalled_body_gets_408_and_releases_its_partial(strict, big_store):
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.port)
    head = f"PUT /files/stall.bin HTTP/1.1\r\nHost: t\r\n{AUTH.strip()}\r\nContent-Length: 1000000\r\n\r\n"
    writer.write(head.encode() + os.urandom(10_000))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(200), 20)  # the body never ends: the server gives up
    writer.close()
    assert answer.split(b" ", 2)[1] == b"408"
    for _ in range(100):
        if not big_store.claims.uploads():
            break
        await asyncio.sleep(0.05)
    assert not big_store.claims.uploads()
    with pytest.raises(NotFound):
        await big_store.lookup("stall.bin")


@pytest.mark.slow
async def test_uploads_over_the_cap_get_503(strict, http, big_store):
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.port)
    head = f"PUT /files/slow.bin HTTP/1.1\r\nHost: t\r\n{AUTH.strip()}\r\nContent-Length: 100000\r\n\r\n"
    writer.write(head.encode() + b"x" * 100)
    await writer.drain()
    await until(big_store.claims.uploads, "the first upload in its handler")
    async with http.put(f"{strict.url}/files/second.bin", data=b"y", headers={"Authorization": "Bearer wr1ter"}) as r:
        assert r.status == 503 and r.headers["Retry-After"] == "1"
    writer.close()
    # The first one is over (its peer gone, or past the idle timeout): both PUTs answered.
    await until(lambda: answered(strict, "PUT") == 2, "the first upload's end")
    status, _ = await put(http, strict, "second.bin", b"y", Authorization="Bearer wr1ter")
    assert status == 201


@pytest.mark.slow
async def test_a_client_that_stops_reading_is_cut_off(front, http, big_store):
    front.idle_timeout = 0.5
    await put(http, front, "huge.bin", os.urandom(32 << 20))
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    writer.write(b"GET /files/huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    await writer.drain()
    # Read nothing: the socket buffers fill, the server's write waits past
    # the idle timeout, and the server ends its answer.
    await until(lambda: answered(front, "GET") == 1, "the GET cut off")
    got = 0
    while chunk := await asyncio.wait_for(reader.read(1 << 20), 10):
        got += len(chunk)
    writer.close()
    assert got < 32 << 20  # the connection was closed before the whole body


async def test_refused_before_100_continue(strict):
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.port)
    writer.write(b"PUT /files/e.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(200), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer  # not "100 Continue": the body is never asked for
