"""S3Store.rename and delete on a real SeaweedFS (tests/seaweed.py): a copy
with the entry, then a delete of the old key; refusals leave both keys."""

from __future__ import annotations

import dataclasses

import pytest

from zfile.errors import BadName, Exists, NotFound

from .test_s3 import digest, new_store, read_all, upload

pytestmark = pytest.mark.slow


@pytest.fixture
async def store(s3):
    s = new_store(s3)
    await s.open()
    yield s
    await s.close()


async def stored(store, name: str, data: bytes):
    up = await upload(store, name, data)
    return await up.commit(digest(data))


async def test_rename_copies_the_entry_and_deletes_the_old_key(store):
    entry = await stored(store, "a/old.bin", b"abc" * 1000)
    moved = await store.rename("a/old.bin", "b/new.bin")
    assert moved == dataclasses.replace(entry, name="b/new.bin")
    assert await store.lookup("b/new.bin") == moved
    with pytest.raises(NotFound):
        await store.lookup("a/old.bin")
    download = await store.open_download("b/new.bin")
    try:
        assert await read_all(download) == b"abc" * 1000
    finally:
        await download.close()
    assert [e.name for e in await store.list()] == ["b/new.bin"]


async def test_refusals_leave_both_names(store):
    await stored(store, "x", b"x-bytes")
    await stored(store, "y", b"y-bytes")
    with pytest.raises(Exists):
        await store.rename("x", "y")
    with pytest.raises(NotFound):
        await store.rename("nowhere", "z")
    for bad in ("../x", ".zfile/x", "/abs"):
        with pytest.raises(BadName):
            await store.rename("x", bad)
    assert [e.name for e in await store.list()] == ["x", "y"]
    await store.rename("x", "y", clobber=True)
    assert [(e.name, e.size) for e in await store.list()] == [("y", 7)]
    assert (await store.delete("y")).name == "y"
    assert await store.list() == []
