"""Tests of an upload whose size is known only at its end (Store.begin_stream,
PUT-STREAM's store side), on each backend: the local one against a real
temporary directory, S3 against a real SeaweedFS (tests/seaweed.py)."""

from __future__ import annotations

import os

import blake3
import botocore.session
import pytest

from tests.seaweed import BUCKET
from zfile.errors import Exists, IntegrityError, NotFound, StoreError, TooLarge
from zfile.fileio.direct import ALIGN
from zfile.store import LocalStore, make_store
from zfile.store.s3.upload import MIN_PART, STREAM_TIER, stream_part_size

MiB = 1 << 20


def b3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def location(request, tmp_path) -> tuple[str, str | None]:
    """Where a store of each backend goes: a directory, or a bucket and prefix and its endpoint."""
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        return s3.location(), s3.endpoint
    return str(tmp_path / "store"), None


@pytest.fixture
async def store(location):
    s = make_store(location[0], max_file_size=1 << 30, max_name_bytes=4096, partial_ttl=3600.0, s3_endpoint=location[1])
    await s.open()
    yield s
    await s.close()


def held(store) -> list[str]:
    """What the store keeps for uploads in progress: a local store's partial
    files, an S3 store's multipart uploads and state objects."""
    if isinstance(store, LocalStore):
        return sorted(p.name for p in store.layout.tmp.iterdir())
    client = botocore.session.Session().create_client("s3", endpoint_url=store.endpoint)
    uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix).get("Uploads", [])
    private = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{store.prefix}.zfile/").get("Contents", [])
    return sorted([u["Key"] for u in uploads] + [o["Key"] for o in private])


async def begin(store, name: str, *, clobber: bool = True):
    return await store.begin_stream(name=name, mtime_ns=7, mode=0o4640, algo="blake3", clobber=clobber, peer="p")


async def stream(store, name: str, data: bytes, piece: int = MiB):
    up = await begin(store, name)
    for at in range(0, len(data), piece):
        await up.write(at, memoryview(data)[at : at + piece])
    return up


async def stored(store, name: str) -> bytes:
    download = await store.open_download(name)
    try:
        return await download.read(0, download.entry.size + 1)
    finally:
        await download.close()


@pytest.mark.parametrize(
    "size",
    [0, 5, pytest.param(MIN_PART, marks=pytest.mark.slow), pytest.param(2 * MIN_PART + 12345, marks=pytest.mark.slow)],
)
async def test_a_stream_is_published_only_at_its_commit_with_the_size_its_end_gives(store, size):
    data = os.urandom(size)
    up = await stream(store, "builds/b.tar", data)
    assert up.offset == size
    with pytest.raises(NotFound):
        await store.lookup("builds/b.tar")  # nothing under the final name before the commit
    entry = await up.commit(b3(data), size)
    assert (entry.name, entry.size, entry.mtime_ns, entry.mode, entry.digest, entry.peer) == (
        "builds/b.tar",
        size,
        7,
        0o640,
        b3(data),
        "p",
    )
    assert await store.lookup("builds/b.tar") == entry
    assert await stored(store, "builds/b.tar") == data
    assert held(store) == []


async def test_the_local_store_writes_a_stream_straight_into_its_partial(tmp_path):
    store = LocalStore(tmp_path / "store")
    await store.open()
    try:
        data = os.urandom(3 * MiB + 1)
        up = await stream(store, "s.bin", data)
        [part] = store.layout.tmp.iterdir()  # no state file: nothing could resume it
        assert part.name == f"{up.transfer}.part" and len(up.transfer) == 32
        # All but less than a page, which a direct write keeps until the commit's flush.
        written = part.read_bytes()
        assert data.startswith(written) and len(data) - len(written) < ALIGN
        await up.commit(b3(data), len(data))
        assert (tmp_path / "store" / "s.bin").read_bytes() == data
        assert list(store.layout.tmp.iterdir()) == []
    finally:
        await store.close()


async def test_a_wrong_size_or_digest_at_the_end_stores_nothing(store):
    size = MIN_PART + 3  # on S3 a multipart upload, which is aborted
    data = os.urandom(size)
    for declared, digest in ((size - 1, b3(data)), (size + 1, b3(data)), (size, b3(data[1:]))):
        up = await stream(store, "bad.bin", data)
        with pytest.raises(IntegrityError):
            await up.commit(digest, declared)
        with pytest.raises(NotFound):
            await store.lookup("bad.bin")
        assert held(store) == []
        with pytest.raises(StoreError):
            await up.write(size, b"x")  # finished


async def test_a_stream_past_the_size_limit_is_too_large_and_aborting_drops_it(location):
    store = make_store(
        location[0], max_file_size=1000, max_name_bytes=4096, partial_ttl=3600.0, s3_endpoint=location[1]
    )
    await store.open()
    try:
        up = await stream(store, "huge.bin", b"\0" * 999)
        with pytest.raises(TooLarge, match="passed 1000 bytes"):
            await up.write(up.offset, b"ab")
        await up.write(up.offset, b"a")  # still live, up to the limit exactly
        await up.abort()
        await up.abort()
        assert held(store) == []
        with pytest.raises(NotFound):
            await store.lookup("huge.bin")
    finally:
        await store.close()


async def test_no_clobber_refuses_a_stored_name_before_any_byte(store):
    first = await stream(store, "x.txt", b"one")
    await first.commit(b3(b"one"), 3)
    with pytest.raises(Exists):
        await begin(store, "x.txt", clobber=False)
    assert held(store) == []


async def test_closing_the_store_drops_a_live_stream(store):
    await stream(store, "open.bin", os.urandom(MIN_PART + 1))
    await store.close()
    await store.open()
    assert held(store) == []
    with pytest.raises(NotFound):
        await store.lookup("open.bin")


def test_stream_parts_grow_so_that_ten_thousand_hold_more_than_a_tebibyte():
    assert stream_part_size(1) == stream_part_size(STREAM_TIER) == MIN_PART
    assert stream_part_size(STREAM_TIER + 1) == 2 * MIN_PART
    assert max(stream_part_size(n) for n in range(1, 10_001)) <= 5 << 30
    assert sum(stream_part_size(n) for n in range(1, 10_001)) > 1 << 40


async def test_what_a_crash_mid_stream_leaves_is_deleted_at_the_next_start(tmp_path):
    store = LocalStore(tmp_path / "store")
    await store.open()
    up = await stream(store, "cut.bin", os.urandom(MiB + 7))
    [part] = store.layout.tmp.iterdir()
    left = part.read_bytes()  # what kill -9 would leave on the disk
    await store.close()
    part.write_bytes(left)
    again = LocalStore(tmp_path / "store")
    await again.open()
    try:
        assert list(again.layout.tmp.iterdir()) == []
        assert up.transfer not in again.claims
        with pytest.raises(NotFound):
            await again.lookup("cut.bin")
    finally:
        await again.close()
