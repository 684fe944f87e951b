"""Bearer tokens on every request of the HTTP front, and their reload."""

from __future__ import annotations

import pytest

from zfile.http import HttpFront

from ..conftest import free_port


@pytest.fixture
async def guarded(big_store, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("r3ader read\nwr1ter write\n")
    f = HttpFront(big_store, address=f"127.0.0.1:{free_port()}", tokens=str(tokens))
    await f.start()
    yield f, tokens
    await f.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_tokens_guard_every_request(guarded, http):
    front, tokens = guarded
    url = f"{front.url}/files/t.txt"
    async with http.put(url, data=b"hi") as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    async with http.put(url, data=b"hi", headers=bearer("r3ader")) as r:
        assert r.status == 403
    async with http.put(url, data=b"hi", headers=bearer("wr1ter")) as r:
        assert r.status == 201
    for path in ("/files/t.txt", "/files/", "/"):
        async with http.get(front.url + path) as r:
            assert r.status == 401
        async with http.get(front.url + path, headers=bearer("nope")) as r:
            assert r.status == 401
        async with http.get(front.url + path, headers=bearer("r3ader")) as r:
            assert r.status == 200
    async with http.delete(url, headers=bearer("r3ader")) as r:
        assert r.status == 403
    tokens.write_text("fr3sh read\n")
    front.reload()
    async with http.get(url, headers=bearer("r3ader")) as r:
        assert r.status == 401
    async with http.get(url, headers=bearer("fr3sh")) as r:
        assert r.status == 200 and await r.read() == b"hi"
