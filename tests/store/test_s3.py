"""Tests of the S3 backend (zfile.store.s3) against a real SeaweedFS
(tests/seaweed.py): uploads small and multipart, resume, digest checks,
listing, ranged downloads, the sweep and the errors."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import blake3
import botocore.session
import pytest

from tests.seaweed import BUCKET
from zfile.errors import BadName, Busy, Exists, IntegrityError, NotFound, StoreError
from zfile.protocol.events import PutFile
from zfile.store import held as held_module
from zfile.store import make_store
from zfile.store.s3 import S3Store, parse_location
from zfile.store.s3.store import PUTS_IN_FLIGHT
from zfile.store.s3.upload import MIN_PART

pytestmark = pytest.mark.slow  # every test starts (or shares) a SeaweedFS

MiB = 1 << 20


def digest(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def s3_client(endpoint: str):
    return botocore.session.Session().create_client("s3", endpoint_url=endpoint)


def new_store(s3, location: str | None = None, **kw) -> S3Store:
    kw.setdefault("max_file_size", 1 << 34)
    kw.setdefault("max_name_bytes", 4096)
    kw.setdefault("partial_ttl", 3600.0)
    store = make_store(location or s3.location(), s3_endpoint=s3.endpoint, **kw)
    assert isinstance(store, S3Store)
    return store


@pytest.fixture
async def store(s3):
    s = new_store(s3)
    await s.open()
    yield s
    await s.close()


async def upload(store, name: str, data: bytes, *, piece: int = MiB, clobber: bool = True, mtime_ns: int = 1):
    up = await store.begin_upload(
        name=name, size=len(data), mtime_ns=mtime_ns, mode=0o640, algo="blake3", clobber=clobber, peer="tester"
    )
    for at in range(up.offset, len(data), piece):
        await up.write(at, memoryview(data)[at : at + piece])
    return up


async def read_all(download, chunk: int = MiB, offset: int = 0) -> bytes:
    stream = download.reader(offset, chunk)
    out = bytearray()
    try:
        while not stream.done:
            buf, view = await stream.next()
            assert len(view) <= chunk
            out += view
            stream.pool.give(buf)
    finally:
        await stream.aclose()
    return bytes(out)


def test_parse_location():
    assert parse_location("s3://b/p/q/") == ("b", "p/q/")
    assert parse_location("s3://b/p") == ("b", "p/")
    assert parse_location("s3://b") == ("b", "")


async def test_a_small_upload_is_one_object_with_its_entry_as_metadata(store, s3):
    data = os.urandom(300_000)
    up = await upload(store, "dir/small.bin", data, piece=65536)
    entry = await up.commit(digest(data))
    assert (entry.name, entry.size, entry.mode, entry.digest, entry.peer) == (
        "dir/small.bin",
        len(data),
        0o640,
        digest(data),
        "tester",
    )
    head = s3_client(s3.endpoint).head_object(Bucket=BUCKET, Key=store.prefix + "dir/small.bin")
    assert head["ContentLength"] == len(data)
    assert head["Metadata"]["zfile-digest"] == digest(data).hex()
    assert await store.lookup("dir/small.bin") == entry
    download = await store.open_download("dir/small.bin")
    try:
        assert download.entry == entry
        assert await read_all(download, chunk=100_000) == data
        assert await download.read(299_990, 100) == data[299_990:]
        assert await download.read(len(data), 10) == b""
    finally:
        await download.close()


async def test_a_multipart_upload_round_trips_and_leaves_nothing_private(store, s3):
    data = os.urandom(2 * MIN_PART + 12345)
    up = await upload(store, "big.bin", data)
    assert up.written_digest() == digest(data)
    entry = await up.commit(digest(data))
    assert entry.size == len(data)
    client = s3_client(s3.endpoint)
    assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix).get("Uploads", []) == []
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=store.prefix)["Contents"]]
    assert keys == [store.prefix + "big.bin"]
    download = await store.open_download("big.bin")
    try:
        assert await read_all(download) == data
        # Ranges across a part boundary and across the download's GET windows.
        assert await read_all(download, chunk=3 * MiB, offset=MIN_PART - 5) == data[MIN_PART - 5 :]
        assert await download.read(MIN_PART - 2, 4) == data[MIN_PART - 2 : MIN_PART + 2]
    finally:
        await download.close()


async def test_a_digest_mismatch_aborts_the_upload(store, s3):
    data = os.urandom(MIN_PART + 1)
    up = await upload(store, "bad.bin", data)
    with pytest.raises(IntegrityError):
        await up.commit(digest(b"something else"))
    client = s3_client(s3.endpoint)
    assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix).get("Uploads", []) == []
    with pytest.raises(NotFound):
        await store.lookup("bad.bin")
    small = await upload(store, "bad-small.bin", b"abc")
    with pytest.raises(IntegrityError):
        await small.commit(digest(b"abd"))
    with pytest.raises(NotFound):
        await store.lookup("bad-small.bin")


async def test_a_suspended_upload_resumes_from_the_parts_held_even_in_another_store(store, s3):
    data = os.urandom(3 * MIN_PART + 777)
    up = await store.begin_upload(
        name="r.bin", size=len(data), mtime_ns=5, mode=0o600, algo="blake3", clobber=True, peer=""
    )
    assert up.offset == 0
    cut = 2 * MIN_PART + MiB  # two whole parts and a bit, which is not kept
    for at in range(0, cut, MiB):
        await up.write(at, data[at : at + MiB])
    with pytest.raises(Busy):
        await store.begin_upload(
            name="r.bin", size=len(data), mtime_ns=5, mode=0o600, algo="blake3", clobber=True, peer=""
        )
    await up.suspend()
    # A second store on the same location: what a restarted daemon sees.
    other = new_store(s3, store._location)
    await other.open()
    try:
        again = await other.begin_upload(
            name="r.bin", size=len(data), mtime_ns=5, mode=0o600, algo="blake3", clobber=True, peer=""
        )
        assert again.offset == 2 * MIN_PART
        for at in range(again.offset, len(data), MiB):
            await again.write(at, data[at : at + MiB])
        assert again.written_digest() is None  # the parts held are hashed only when read back
        entry = await again.commit(digest(data))
        assert entry.digest == digest(data)
        download = await store.open_download("r.bin")
        try:
            assert await read_all(download) == data
        finally:
            await download.close()
    finally:
        await other.close()


async def test_a_resumed_upload_with_wrong_bytes_is_refused_by_reading_them_back(store):
    data = os.urandom(2 * MIN_PART + 10)
    up = await store.begin_upload(
        name="rb.bin", size=len(data), mtime_ns=1, mode=0o600, algo="blake3", clobber=True, peer=""
    )
    for at in range(0, MIN_PART + MiB, MiB):
        await up.write(at, data[at : at + MiB])
    await up.suspend()
    again = await store.begin_upload(
        name="rb.bin", size=len(data), mtime_ns=1, mode=0o600, algo="blake3", clobber=True, peer=""
    )
    assert again.offset == MIN_PART
    for at in range(again.offset, len(data), MiB):
        await again.write(at, data[at : at + MiB])
    with pytest.raises(IntegrityError):
        await again.commit(digest(b"\1" * MIN_PART + data[MIN_PART:]))
    with pytest.raises(NotFound):
        await store.lookup("rb.bin")


async def test_a_commit_whose_caller_stops_waiting_still_publishes_the_file(store, monkeypatch):
    data = os.urandom(MIN_PART + 3)
    up = await upload(store, "late.bin", data)
    publishing, published = asyncio.Event(), asyncio.Event()
    set_entry = store.set_entry

    async def slow_set_entry(*args, **kw):
        publishing.set()
        await asyncio.sleep(0.5)  # a copy of many GiB on a store that copies, in short
        try:
            return await set_entry(*args, **kw)
        finally:
            published.set()

    monkeypatch.setattr(store, "set_entry", slow_set_entry)
    commit = asyncio.ensure_future(up.commit(digest(data)))
    await publishing.wait()
    commit.cancel()  # the client's timeout, as the server sees it
    with pytest.raises(asyncio.CancelledError):
        await commit
    await asyncio.wait_for(published.wait(), 30)
    assert (await store.lookup("late.bin")).digest == digest(data)


async def test_short_uploads_and_bad_offsets_are_integrity_errors(store):
    up = await store.begin_upload(name="s.bin", size=10, mtime_ns=1, mode=0o600, algo="blake3", clobber=True, peer="")
    with pytest.raises(IntegrityError):
        await up.write(3, b"abc")
    with pytest.raises(IntegrityError):
        await up.write(0, b"x" * 11)
    await up.write(0, b"abc")
    with pytest.raises(IntegrityError):
        await up.commit(digest(b"abc"))
    with pytest.raises(StoreError):
        await up.write(3, b"d")


async def test_clobber_off_refuses_an_existing_name(store):
    await (await upload(store, "x.txt", b"one")).commit(digest(b"one"))
    with pytest.raises(Exists):
        await store.begin_upload(name="x.txt", size=3, mtime_ns=2, mode=0o600, algo="blake3", clobber=False, peer="")
    results = await store.put_many(
        [PutFile("x.txt", 3, 2, 0o600, digest(b"two"), False, b"two")], algo="blake3", peer=""
    )
    assert isinstance(results[0], Exists)
    with pytest.raises(BadName):
        await store.begin_upload(name="../x", size=3, mtime_ns=2, mode=0o600, algo="blake3", clobber=True, peer="")


async def test_several_put_many_at_once_share_one_limit_of_puts_in_flight(store, monkeypatch):
    # A client sends several PUT-MANY messages at once; the store's PutObjects
    # must stay within PUTS_IN_FLIGHT together, not per message.
    in_flight = peak = 0
    call = store.bucket.call

    async def counted(what, op, **kw):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await call(what, op, **kw)
        finally:
            in_flight -= 1

    monkeypatch.setattr(store.bucket, "call", counted)
    batches = [
        [PutFile(f"lim/{b}/{k:02d}", 2, k, 0o644, digest(b"%02d" % k), True, b"%02d" % k) for k in range(40)]
        for b in range(3)
    ]
    results = await asyncio.gather(*(store.put_many(files, algo="blake3", peer="p") for files in batches))
    assert all(not isinstance(r, Exception) for batch in results for r in batch)
    assert len(await store.list("lim/")) == 120
    assert 0 < peak <= PUTS_IN_FLIGHT


async def test_put_many_stores_each_file_and_refuses_the_bad_ones_alone(store):
    files = [PutFile(f"many/{k:03d}", 4, k, 0o644, digest(b"%04d" % k), True, b"%04d" % k) for k in range(150)]
    files.append(PutFile("many/bad", 3, 1, 0o644, digest(b"xyz"), True, b"xyw"))
    files.append(PutFile("many/000", 4, 0, 0o644, digest(b"0000"), True, b"0000"))  # the same file again
    results = await store.put_many(files, algo="blake3", peer="p")
    assert all(r.name == f"many/{k:03d}" for k, r in enumerate(results[:150]))
    assert isinstance(results[150], IntegrityError)
    assert isinstance(results[151], Busy)
    listed = await store.list("many/")
    assert [e.name for e in listed] == [f"many/{k:03d}" for k in range(150)]
    page = await store.list("many/", after="many/100", limit=10)
    assert [e.name for e in page] == [f"many/{k:03d}" for k in range(101, 111)]
    assert await store.list("nothing/") == []
    entry = await store.put_inline(
        name="one",
        size=1,
        mtime_ns=9,
        mode=0o7777,
        algo="blake3",
        clobber=True,
        peer="",
        data=b"1",
        digest=digest(b"1"),
    )
    assert entry.mode == 0o777
    assert await store.lookup("one") == entry


async def test_a_second_store_sees_the_first_ones_writes_at_once(s3):
    location = s3.location()
    first, second = new_store(s3, location), new_store(s3, location)
    await first.open()
    await second.open()
    try:
        assert await second.list() == []
        entry = await first.put_inline(
            name="a",
            size=1,
            mtime_ns=1,
            mode=0o600,
            algo="blake3",
            clobber=True,
            peer="",
            data=b"a",
            digest=digest(b"a"),
        )
        assert await second.list() == [entry]
        replaced = await first.put_inline(
            name="a",
            size=2,
            mtime_ns=2,
            mode=0o600,
            algo="blake3",
            clobber=True,
            peer="",
            data=b"bb",
            digest=digest(b"bb"),
        )
        assert await second.list() == [replaced]
        assert await second.lookup("a") == replaced
    finally:
        await first.close()
        await second.close()


async def test_objects_that_are_not_zfiles_are_not_listed(store, s3):
    s3_client(s3.endpoint).put_object(Bucket=BUCKET, Key=store.prefix + "foreign", Body=b"x")
    assert await store.list() == []
    with pytest.raises(NotFound):
        await store.lookup("foreign")


async def test_held_answers_a_check_from_listings_across_pages(store, s3, monkeypatch):
    monkeypatch.setattr(held_module, "PAGE", 2)  # several pages under one prefix
    names = ["d/a", "d/b", "d/sub/c", "top.bin"]
    for i, name in enumerate(names):
        await (await upload(store, name, bytes([i]) * (10 + i), mtime_ns=100 + i)).commit(digest(bytes([i]) * (10 + i)))
    s3_client(s3.endpoint).put_object(Bucket=BUCKET, Key=store.prefix + "d/foreign", Body=b"x")
    got = await store.held(["d/a", "d/sub/c", "top.bin", "d/foreign", "d/none", "../d/a", "other/x"])
    assert got == {
        "d/a": (10, 100, "blake3", digest(bytes([0]) * 10)),
        "d/sub/c": (12, 102, "blake3", digest(bytes([2]) * 12)),
        "top.bin": (13, 103, "blake3", digest(bytes([3]) * 13)),
    }
    assert await store.held([]) == {}


async def test_a_download_of_a_replaced_file_fails_instead_of_mixing_versions(store):
    data = os.urandom(MIN_PART + 5)
    await (await upload(store, "v", data)).commit(digest(data))
    download = await store.open_download("v")
    try:
        await store.put_inline(
            name="v",
            size=1,
            mtime_ns=1,
            mode=0o600,
            algo="blake3",
            clobber=True,
            peer="",
            data=b"v",
            digest=digest(b"v"),
        )
        with pytest.raises(StoreError, match="replaced"):
            await read_all(download)
    finally:
        await download.close()


async def test_the_sweep_aborts_stale_uploads_only(store, s3):
    data = os.urandom(MIN_PART + 1)
    stale = await upload(store, "stale.bin", data)
    await stale.suspend()
    live = await upload(store, "live.bin", data)
    assert await store.sweep_partials() == 0
    # The stale upload and the state object that named it.
    assert await store.sweep_partials(now=time.time() + 2 * store.partial_ttl) == 2
    client = s3_client(s3.endpoint)
    uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix).get("Uploads", [])
    assert [u["Key"] for u in uploads] == [live.key]
    private = client.list_objects_v2(Bucket=BUCKET, Prefix=store.prefix + ".zfile/")["Contents"]
    assert [o["Key"] for o in private] == [store.state_key(live.transfer, "blake3")]
    await live.abort()
    assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix).get("Uploads", []) == []
    again = await store.begin_upload(
        name="stale.bin", size=len(data), mtime_ns=1, mode=0o600, algo="blake3", clobber=True, peer=""
    )
    assert again.offset == 0
    await again.abort()


async def test_an_entry_can_be_written_by_part_copies_onto_the_object_itself(store, monkeypatch):
    """What a store that refuses a CopyObject past 5 GiB (S3) gets, on a small file."""
    import dataclasses

    from zfile.store.s3 import copy

    monkeypatch.setattr(copy, "COPY_PART_BYTES", MIN_PART)
    data = os.urandom(2 * MIN_PART + 3)
    entry = await (await upload(store, "copied.bin", data)).commit(digest(data))
    changed = dataclasses.replace(entry, mode=0o600, id="another")
    await copy.copy_in_parts(store.bucket, store.key("copied.bin"), store.key("copied.bin"), changed)
    assert await store.lookup("copied.bin") == changed
    download = await store.open_download("copied.bin")
    try:
        assert await read_all(download) == data
    finally:
        await download.close()


async def test_an_upload_in_progress_leaves_what_the_key_held_until_it_is_committed(store, s3):
    old = os.urandom(MIN_PART + 5)
    first = await (await upload(store, "v.bin", old)).commit(digest(old))
    new = os.urandom(3 * MIN_PART + 1)
    up = await store.begin_upload(
        name="v.bin", size=len(new), mtime_ns=2, mode=0o640, algo="blake3", clobber=True, peer="tester"
    )
    for at in range(0, 2 * MIN_PART + MiB, MiB):
        await up.write(at, new[at : at + MiB])
    assert await store.lookup("v.bin") == first  # the parts sent so far are nowhere to be read
    assert [e.name for e in await store.list()] == ["v.bin"]
    for at in range(up.offset, len(new), MiB):
        await up.write(at, new[at : at + MiB])
    with pytest.raises(IntegrityError):
        await up.commit(digest(b"not these bytes"))
    assert await store.lookup("v.bin") == first  # a refused upload loses nothing
    up = await upload(store, "v.bin", new, mtime_ns=3)
    second = await up.commit(digest(new))
    assert await store.lookup("v.bin") == second and second.digest == digest(new)
    client = s3_client(s3.endpoint)
    assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix).get("Uploads", []) == []
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=store.prefix)["Contents"]]
    assert keys == [store.key("v.bin")]


async def test_an_upload_completed_whose_entry_was_not_written_is_finished_by_the_next_send(store, s3):
    data = os.urandom(2 * MIN_PART)  # whole parts only: all are sent before the commit
    up = await upload(store, "half.bin", data)
    await up.suspend()
    # The daemon stopped between CompleteMultipartUpload and writing the entry.
    client = s3_client(s3.endpoint)
    (held,) = client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix)["Uploads"]
    parts = client.list_parts(Bucket=BUCKET, Key=held["Key"], UploadId=held["UploadId"])["Parts"]
    client.complete_multipart_upload(
        Bucket=BUCKET,
        Key=held["Key"],
        UploadId=held["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]},
    )
    assert client.head_object(Bucket=BUCKET, Key=held["Key"])["ContentLength"] == len(data)
    with pytest.raises(NotFound):  # bytes without a digest are no entry
        await store.lookup("half.bin")
    assert await store.list() == []
    again = await store.begin_upload(
        name="half.bin", size=len(data), mtime_ns=1, mode=0o640, algo="blake3", clobber=False, peer="tester"
    )
    assert again.offset == len(data)
    entry = await again.commit(digest(data))
    assert await store.lookup("half.bin") == entry
    download = await store.open_download("half.bin")
    try:
        assert await read_all(download) == data
    finally:
        await download.close()


async def test_credentials_stay_out_of_the_logs_even_at_debug(s3, caplog):
    from tests.seaweed import ACCESS_KEY, SECRET_KEY

    caplog.set_level(logging.DEBUG)
    store = new_store(s3)
    await store.open()
    try:
        data = os.urandom(MIN_PART + 1)
        await (await upload(store, "logged.bin", data)).commit(digest(data))
        await store.list()
    finally:
        await store.close()
    assert ACCESS_KEY not in caplog.text and SECRET_KEY not in caplog.text


async def test_a_missing_bucket_is_a_clear_error(s3):
    store = new_store(s3, "s3://no-such-bucket-zfile/x/")
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-zfile' does not exist"):
        await store.open()


async def test_bad_credentials_are_a_clear_error_that_does_not_show_the_secret(s3, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
    store = new_store(s3)
    with pytest.raises(StoreError, match="refused the credentials") as info:
        await store.open()
    assert "wrong-secret-value" not in str(info.value)


async def test_an_unreachable_endpoint_is_a_clear_error(s3, monkeypatch):
    import zfile.store.s3.client as client

    monkeypatch.setattr(client, "MAX_BACKOFF", 0.05)
    from tests.conftest import free_port

    store = make_store(
        "s3://b/p/", s3_endpoint=f"http://127.0.0.1:{free_port()}", max_file_size=1, max_name_bytes=10, partial_ttl=1
    )
    with pytest.raises(StoreError, match="cannot reach the object store at http://127.0.0.1"):
        await store.open()


async def test_a_location_without_a_bucket_fails_in_open():
    store = make_store("s3://", max_file_size=1, max_name_bytes=10, partial_ttl=1)
    with pytest.raises(StoreError, match="names no bucket"):
        await store.open()


async def test_delete_removes_the_object_and_usage_has_no_free_space_limit(store, s3):
    data = os.urandom(1000)
    entry = await (await upload(store, "gone.bin", data)).commit(digest(data))
    assert await store.delete("gone.bin") == entry
    with pytest.raises(NotFound):
        await store.lookup("gone.bin")
    with pytest.raises(NotFound):
        await store.delete("gone.bin")
    usage = store.usage()
    assert usage.free is None and usage.partials == 0
