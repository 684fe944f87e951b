"""GET, HEAD and PUT of one file through the HTTP front, in process."""

from __future__ import annotations

import asyncio
import logging
import os

import aiohttp
import blake3
import pytest

from zfile.errors import NotFound

from .conftest import raw


async def put(http, front, name: str, data: bytes, **headers) -> tuple[int, dict]:
    async with http.put(f"{front.url}/files/{name}", data=data, headers=headers) as r:
        return r.status, (await r.json() if r.status == 201 else {"text": await r.text()})


async def test_put_then_get_and_head(front, http, big_store):
    data = os.urandom(700_000)
    status, entry = await put(http, front, "d/a.bin", data)
    assert status == 201
    assert entry["name"] == "d/a.bin" and entry["size"] == len(data)
    assert entry["digest"] == blake3.blake3(data).hexdigest() and entry["algo"] == "blake3"
    assert (await big_store.lookup("d/a.bin")).digest.hex() == entry["digest"]
    async with http.get(f"{front.url}/files/d/a.bin") as r:
        assert r.status == 200 and await r.read() == data
        assert r.headers["ETag"] == f'"{entry["digest"]}"'
        assert r.headers["Content-Length"] == str(len(data))
        assert r.headers["Accept-Ranges"] == "bytes"
        assert r.headers["Content-Disposition"].startswith('attachment; filename="a.bin"')
        get_headers = r.headers.copy()
    async with http.head(f"{front.url}/files/d/a.bin") as r:
        assert r.status == 200 and await r.read() == b""
        for key in ("ETag", "Last-Modified", "Content-Length", "Accept-Ranges", "Content-Disposition"):
            assert r.headers[key] == get_headers[key]


async def test_ranges_and_conditionals(front, http):
    data = os.urandom(1000)
    _, entry = await put(http, front, "r.bin", data)
    url = f"{front.url}/files/r.bin"
    for spec, want in [("0-0", data[:1]), ("999-999", data[999:]), ("-1", data[999:]), ("100-299", data[100:300])]:
        async with http.get(url, headers={"Range": f"bytes={spec}"}) as r:
            assert r.status == 206 and await r.read() == want
            first = 1000 - len(want) if spec.startswith("-") else int(spec.split("-")[0])
            assert r.headers["Content-Range"] == f"bytes {first}-{first + len(want) - 1}/1000"
    async with http.get(url, headers={"Range": "bytes=1000-"}) as r:
        assert r.status == 416 and r.headers["Content-Range"] == "bytes */1000"
    tag = f'"{entry["digest"]}"'
    async with http.get(url, headers={"If-None-Match": tag}) as r:
        assert r.status == 304 and r.headers["ETag"] == tag
        last_modified = r.headers["Last-Modified"]
    async with http.get(url, headers={"If-Modified-Since": last_modified}) as r:
        assert r.status == 304
    async with http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'}) as r:
        assert r.status == 200 and await r.read() == data  # another version: the whole file
    async with http.get(url, headers={"Range": "bytes=0-9", "If-Range": tag}) as r:
        assert r.status == 206 and await r.read() == data[:10]
    async with http.get(url, headers={"If-Match": '"stale"'}) as r:
        assert r.status == 412


async def test_put_refusals_commit_nothing(front, http, big_store):
    data = b"x" * 5000
    status, body = await put(http, front, "bad.bin", data, **{"X-Zfile-Digest": "blake3=" + "00" * 32})
    assert status == 422 and "digest" in body["text"]
    with pytest.raises(NotFound):
        await big_store.lookup("bad.bin")
    good = {"X-Zfile-Digest": "blake3=" + blake3.blake3(data).hexdigest()}
    status, _ = await put(http, front, "ok.bin", data, **good)
    assert status == 201
    status, _ = await put(http, front, "ok.bin", b"other", **{"If-None-Match": "*"})
    assert status == 412
    async with http.get(f"{front.url}/files/ok.bin") as r:
        assert await r.read() == data
    status, _ = await put(http, front, "m.bin", data, **{"X-Zfile-Digest": "sha1=00"})
    assert status == 400
    # Replacing is allowed by default.
    assert (await put(http, front, "ok.bin", b"new"))[0] == 201


async def test_disconnect_mid_upload_leaves_nothing(front, big_store, caplog):
    caplog.set_level(logging.INFO)
    head = "PUT /files/gone.bin HTTP/1.1\nHost: t\nContent-Length: 4000000\n"
    await raw(front.port, head, os.urandom(300_000), close_early=True)
    # The request's log line follows the release of its partial: once it is
    # there the upload is over (no claim checked before the upload began).
    deadline = asyncio.get_running_loop().time() + 30
    while "PUT /files/gone.bin 499" not in caplog.text:
        assert asyncio.get_running_loop().time() < deadline, caplog.text
        await asyncio.sleep(0.01)
    # Logged as the client going away, without a traceback.
    assert not big_store.claims.uploads(), "the interrupted upload still holds its partial"
    with pytest.raises(NotFound):
        await big_store.lookup("gone.bin")
    assert not (big_store.root / "gone.bin").exists()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "target",
    [
        "/files/../escape",
        "/files/%2e%2e/escape",
        "/files/a/%2E%2E/%2e%2e/escape",
        "/files/a%2F..%2F..%2Fescape",
        "/files//etc/passwd",
        "/files/%2Fetc%2Fpasswd",
        "/files/a%00b",
        "/files/.zfile/catalog.sqlite3",
        "/files/%ff%fe",
        "/files/a/../",
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_hostile_paths_get_400_and_touch_nothing(front, big_store, tmp_path, target, method):
    before = sorted(p.name for p in tmp_path.rglob("*"))
    status, data = await raw(front.port, f"{method} {target} HTTP/1.1\nHost: t\nContent-Length: 3\n", b"abc")
    assert status == 400, data
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert await big_store.list() == []


async def test_unknown_paths_and_methods(front, http):
    async with http.get(f"{front.url}/elsewhere") as r:
        assert r.status == 404
    async with http.patch(f"{front.url}/files/x") as r:
        assert r.status == 405 and "PUT" in r.headers["Allow"]
    async with http.get(f"{front.url}/files/missing") as r:
        assert r.status == 404


async def test_a_file_replaced_while_served_is_served_whole_from_the_old_version(front, http):
    old, new = os.urandom(8 << 20), os.urandom(8 << 20)
    await put(http, front, "v.bin", old)
    async with http.get(f"{front.url}/files/v.bin") as r:
        got = await r.content.readexactly(1 << 20)
        assert (await put(http, front, "v.bin", new))[0] == 201
        got += await r.read()
    assert got == old
    async with http.get(f"{front.url}/files/v.bin") as r:
        assert await r.read() == new


async def test_a_file_cut_short_on_disk_ends_its_answer_early_and_the_front_stays_up(
    front, http, big_store, tmp_path, caplog
):
    data = os.urandom(4 << 20)
    await put(http, front, "cut.bin", data)
    await put(http, front, "whole.bin", b"fine")
    os.truncate(tmp_path / "root" / "cut.bin", 1 << 20)  # behind the store's back
    with caplog.at_level(logging.ERROR, logger="zfile.http"):
        async with http.get(f"{front.url}/files/cut.bin") as r:
            assert r.status == 200 and r.content_length == len(data)
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()  # fewer bytes than Content-Length said, then the connection ends
    assert "changed on disk" in caplog.text
    async with http.get(f"{front.url}/files/whole.bin") as r:
        assert await r.read() == b"fine"


@pytest.mark.slow
async def test_100_concurrent_gets_of_different_files(front, http):
    files = {f"many/{i:03d}.bin": os.urandom(20_000 + 997 * i) for i in range(100)}
    for name, data in files.items():
        assert (await put(http, front, name, data))[0] == 201

    async def fetch(name: str) -> bytes:
        async with http.get(f"{front.url}/files/{name}") as r:
            assert r.status == 200
            return await r.read()

    got = await asyncio.gather(*(fetch(n) for n in files))
    assert got == list(files.values())


async def test_delete(front, http, big_store):
    await put(http, front, "del.txt", b"bye")
    async with http.delete(f"{front.url}/files/del.txt") as r:
        assert r.status == 204
    async with http.get(f"{front.url}/files/del.txt") as r:
        assert r.status == 404
    async with http.delete(f"{front.url}/files/del.txt") as r:
        assert r.status == 404
    assert await big_store.list() == []


async def test_put_that_clashes_with_the_tree_is_a_conflict(front, http, big_store):
    # A directory where the file would go, or a file where a directory must be: 409, nothing stored.
    assert (await put(http, front, "d/e/f.bin", b"f"))[0] == 201
    status, body = await put(http, front, "d/e", b"x")
    assert (status, body["text"]) == (409, "'d/e' is a directory in the store\n")
    status, body = await put(http, front, "d/e/f.bin/g", b"x")
    assert (status, body["text"]) == (409, "'d/e/f.bin/g' needs a directory where the store holds a file\n")
    assert [e.name for e in await big_store.list()] == ["d/e/f.bin"]


async def test_metrics_count_requests_and_bytes(front, http):
    await put(http, front, "m.bin", b"m" * 1000)
    async with http.get(f"{front.url}/files/m.bin") as r:
        assert len(await r.read()) == 1000
    async with http.get(f"{front.url}/files/nothing") as r:
        assert r.status == 404
    async with http.get(f"{front.url}/metrics") as r:
        assert r.status == 200 and r.content_type == "text/plain"
        text = await r.text()
    assert 'zfile_http_requests_total{method="PUT",status="201"} 1.0' in text
    assert 'zfile_http_requests_total{method="GET",status="404"} 1.0' in text
    assert "zfile_http_received_bytes_total 1000.0" in text
    assert "zfile_http_sent_bytes_total 1" in text  # 1000 file bytes and the 404's sentence
    assert 'zfile_http_uploads_total{result="committed"} 1.0' in text
    assert 'zfile_http_request_seconds_count{method="GET"} 2.0' in text
    assert "zfile_http_requests_in_flight 1.0" in text  # this request


async def test_chunked_put_without_a_length_is_spooled_then_stored(front, http, big_store):
    data = os.urandom(3 << 20)

    async def body():
        for k in range(0, len(data), 100_000):
            yield data[k : k + 100_000]

    async with http.put(f"{front.url}/files/chunked.bin", data=body()) as r:
        assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert r.status == 201 and (await r.json())["size"] == len(data)
    async with http.get(f"{front.url}/files/chunked.bin") as r:
        assert await r.read() == data
    wrong = {"X-Zfile-Digest": "blake3=" + "11" * 32}
    async with http.put(f"{front.url}/files/chunked2.bin", data=body(), headers=wrong) as r:
        assert r.status == 422
    with pytest.raises(NotFound):
        await big_store.lookup("chunked2.bin")
    head = "PUT /files/empty.bin HTTP/1.1\nHost: t\nTransfer-Encoding: chunked\n"
    status, _ = await raw(front.port, head, b"0\r\n\r\n")
    assert status == 201 and (await big_store.lookup("empty.bin")).size == 0
