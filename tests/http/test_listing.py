"""Listings (JSON and HTML, paged) and the form upload through the HTTP front, in process."""

from __future__ import annotations

import os

import aiohttp
import blake3
from yarl import URL

from zfile.protocol.entries import entry_json

from .test_files import put

JSON = {"Accept": "application/json"}


async def test_json_listing_has_ls_fields_and_pages(front, http, big_store):
    names = [f"d/{i:02d}.txt" for i in range(7)] + ["d/sub/deep.txt", "other.txt"]
    for name in names:
        assert (await put(http, front, name, name.encode()))[0] == 201
    async with http.get(f"{front.url}/files/d/", headers=JSON) as r:
        assert r.status == 200 and r.content_type == "application/json"
        listed = await r.json()
    assert [e["name"] for e in listed] == sorted(n for n in names if n.startswith("d/"))
    assert listed[0] == entry_json(await big_store.lookup("d/00.txt"))  # the fields of `zfile ls --json`
    url, seen = f"{front.url}/files/d/?limit=3", []
    while url:
        async with http.get(url, headers=JSON) as r:
            page = await r.json()
            assert len(page) <= 3
            seen += [e["name"] for e in page]
            url = str(r.links["next"]["url"]) if "next" in r.links else None
            if url and not url.startswith("http"):
                url = front.url + url
    assert seen == [e["name"] for e in listed]
    async with http.get(f"{front.url}/files/", headers=JSON) as r:
        assert len(await r.json()) == len(names)
    async with http.get(f"{front.url}/files/d/?limit=0", headers=JSON) as r:
        assert r.status == 400


async def test_html_directory_page(front, http):
    for name in ["a.txt", "d/one.txt", "d/two.txt", "d/sub/x.txt", "<b>.txt"]:
        await put(http, front, name, b"0123456789")
    async with http.get(f"{front.url}/") as r:
        page = await r.text()
    assert r.content_type == "text/html"
    assert 'href="/files/a.txt"' in page and 'href="/files/d/"' in page
    assert page.count('href="/files/d/"') == 1  # one row for the directory, not one per file in it
    assert "&lt;b&gt;.txt" in page and "<b>.txt" not in page  # names are escaped
    assert blake3.blake3(b"0123456789").hexdigest()[:16] in page
    assert '<form id="upload" method="post" action="/files/"' in page
    async with http.get(f"{front.url}/files/d/?limit=2") as r:
        page = await r.text()
    assert "one.txt" in page and 'href="/files/d/sub/"' in page and "two.txt" not in page
    assert 'id="next"' in page


async def test_a_directory_named_without_its_slash_is_redirected(front, http):
    for name in ["d/one.txt", "sp ace/x.txt", "dx"]:
        await put(http, front, name, b"0123456789")
    for method in ("GET", "HEAD"):
        for path, location in (
            ("/files/d", "/files/d/"),
            ("/files/d?limit=2", "/files/d/?limit=2"),
            ("/files/sp%20ace", "/files/sp%20ace/"),
        ):
            async with http.request(method, URL(front.url + path, encoded=True), allow_redirects=False) as r:
                assert (r.status, r.headers.get("Location")) == (301, location), (method, path)
    async with http.get(f"{front.url}/files/d") as r:  # followed: the directory's page
        assert r.status == 200 and r.content_type == "text/html" and "one.txt" in await r.text()
    async with http.get(f"{front.url}/files/dx") as r:  # a file of that name is served, not redirected
        assert r.status == 200 and await r.read() == b"0123456789"
    async with http.get(f"{front.url}/files/d/one", allow_redirects=False) as r:
        assert r.status == 404  # "one.txt" below is no directory "one/"
    async with http.delete(f"{front.url}/files/d") as r:  # DELETE removes one file, never a tree
        assert (r.status, await r.text()) == (409, "'d' is a directory in the store; DELETE removes one file\n")
    async with http.get(f"{front.url}/files/d/one.txt") as r:
        assert r.status == 200


async def test_form_upload_of_several_files(front, http, big_store):
    one, two = os.urandom(3 << 20), b"small"
    form = aiohttp.FormData()
    form.add_field("note", "a plain field is skipped")
    form.add_field("file", one, filename="one.bin", content_type="application/octet-stream")
    form.add_field("file", two, filename="two.txt")
    async with http.post(f"{front.url}/files/in/", data=form) as r:
        assert r.status == 201
        stored = await r.json()
    assert [e["name"] for e in stored] == ["in/one.bin", "in/two.txt"]
    for name, data in [("in/one.bin", one), ("in/two.txt", two)]:
        async with http.get(f"{front.url}/files/{name}") as r:
            assert await r.read() == data
    browser = aiohttp.FormData()
    browser.add_field("file", b"again", filename="three.txt")
    async with http.post(
        f"{front.url}/files/in/", data=browser, headers={"Accept": "text/html"}, allow_redirects=False
    ) as r:
        assert r.status == 303 and r.headers["Location"] == "/files/in/"
    async with http.post(f"{front.url}/files/in/", data=b"x", headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 415
    empty = aiohttp.FormData(default_to_multipart=True)
    empty.add_field("note", "no file")
    async with http.post(f"{front.url}/files/in/", data=empty) as r:
        assert r.status == 400


async def test_names_with_spaces_and_unicode_round_trip(front, http):
    name = "dir ü/café & co #1?.txt"
    quoted = "dir%20%C3%BC/caf%C3%A9%20%26%20co%20%231%3F.txt"
    async with http.put(URL(f"{front.url}/files/{quoted}", encoded=True), data=b"hello") as r:
        assert r.status == 201 and (await r.json())["name"] == name
    async with http.get(f"{front.url}/files/", headers=JSON) as r:
        assert [e["name"] for e in await r.json()] == [name]
    async with http.get(URL(f"{front.url}/files/dir%20%C3%BC/", encoded=True)) as r:
        page = await r.text()
    assert f'href="/files/{quoted}"' in page
    async with http.get(URL(f"{front.url}/files/{quoted}", encoded=True)) as r:
        assert await r.read() == b"hello"
        assert "filename*=UTF-8''caf%C3%A9%20%26%20co%20%231%3F.txt" in r.headers["Content-Disposition"]
