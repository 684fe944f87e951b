"""The HTTP front of a read-only daemon: PUT, POST and DELETE are refused
with 405 and a body saying why, before a byte of the body is read; GET,
HEAD and listings go on."""

from __future__ import annotations

import asyncio
import io

import pytest

from zfile.errors import NotFound
from zfile.http import HttpFront

from ..conftest import free_port


@pytest.fixture
async def read_only(big_store, http):
    """A read-only front over a store holding ``d/a.txt``, put through a writable front."""
    writable = HttpFront(big_store, address=f"127.0.0.1:{free_port()}", shutdown_timeout=5)
    await writable.start()
    try:
        async with http.put(f"{writable.url}/files/d/a.txt", data=b"hello") as r:
            assert r.status == 201
    finally:
        await writable.stop()
    f = HttpFront(big_store, address=f"127.0.0.1:{free_port()}", shutdown_timeout=5, read_only=True)
    await f.start()
    yield f
    await f.stop()


async def test_put_and_delete_are_refused_and_change_nothing(read_only, http, big_store):
    for method, name in (("PUT", "d/new.txt"), ("PUT", "d/a.txt"), ("DELETE", "d/a.txt")):
        async with http.request(method, f"{read_only.url}/files/{name}", data=b"other") as r:
            assert r.status == 405, (method, name)
            assert r.headers["Allow"] == "GET,HEAD"
            assert "read-only" in await r.text() and method in await r.text()
    with pytest.raises(NotFound):
        await big_store.lookup("d/new.txt")
    assert (await big_store.lookup("d/a.txt")).size == 5


async def test_a_form_post_is_refused(read_only, http, big_store):
    async with http.post(f"{read_only.url}/files/d/", data={"file": io.BytesIO(b"xyz")}) as r:
        assert r.status == 405 and "read-only" in await r.text()
    assert [e.name for e in await big_store.list("d/", "", 10)] == ["d/a.txt"]


async def test_a_refused_put_is_answered_before_the_body(read_only):
    reader, writer = await asyncio.open_connection("127.0.0.1", read_only.port)
    writer.write(b"PUT /files/big.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(400), 10)
    writer.close()
    await writer.wait_closed()
    # Not "100 Continue": the body is never asked for.
    assert answer.startswith(b"HTTP/1.1 405"), answer
    assert b"read-only" in answer


async def test_reads_and_listings_go_on(read_only, http):
    async with http.get(f"{read_only.url}/files/d/a.txt") as r:
        assert r.status == 200 and await r.read() == b"hello"
    async with http.head(f"{read_only.url}/files/d/a.txt") as r:
        assert r.status == 200
    async with http.get(f"{read_only.url}/files/d/", headers={"Accept": "application/json"}) as r:
        assert r.status == 200 and "d/a.txt" in await r.text()
