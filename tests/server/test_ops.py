"""The daemon's file operations over a real socket: REMOVE by names and by
prefix, refusals per name (missing, hostile) and of a whole request, a
removal while a download of the file is under way; MOVE, STAT, CHECK and
PING."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import blake3
import pytest

from zfile.client.client import Client
from zfile.errors import ErrorCode, RemoteError
from zfile.protocol.events import (
    CHECK_ABSENT,
    CHECK_DIFFERS,
    CHECK_SAME,
    Cancel,
    Chunk,
    Credit,
    Get,
    GetMeta,
    ListPage,
    ListRequest,
    Ping,
    Pong,
    PutEnd,
    PutOk,
    PutReady,
    PutStream,
    Remove,
    RemoveOk,
)

from ..conftest import start_daemon
from ..rawpeer import MTIME_NS, MiB, RawPeer, digest_of, make_file, partials, snapshot


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One daemon for the module, its root two levels down so that an escape
    through ``..`` would land inside the snapshot taken around it."""
    top = tmp_path_factory.mktemp("ops")
    root = top / "a" / "store"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZFILE_CONFIG", os.devnull)
        d = start_daemon(root, top / "daemon.log")
    d.top = top
    yield d
    assert d.stop() == 0, d.log_text()


async def store_files(endpoint: str, tmp_path: Path, names: list[str], size: int = 100) -> None:
    async with Client(endpoint) as client:
        for name in names:
            await client.put(make_file(tmp_path / "src" / name, size), name)


async def stored(endpoint: str, prefix: str = "") -> list[str]:
    async with Client(endpoint) as client:
        return [e.name async for e in client.list(prefix)]


async def test_remove_by_names_reports_each_and_goes_on_past_a_missing_one(served, tmp_path):
    await store_files(served.endpoint, tmp_path, ["n/a", "n/b"])
    async with Client(served.endpoint) as client:
        got = await client.remove(["n/a", "n/missing", "n/b"])
    assert [(r.name, r.status) for r in got] == [("n/a", "removed"), ("n/missing", "not found"), ("n/b", "removed")]
    assert got[0].digest == digest_of(tmp_path / "src" / "n/a")
    assert got[1].error.code is ErrorCode.NOT_FOUND and "not in the store" in str(got[1].error)
    assert await stored(served.endpoint, "n/") == []
    assert not (served.root / "n" / "a").exists() and not (served.root / "n" / "b").exists()
    assert "removed name='n/a'" in served.log_text()


async def test_remove_by_prefix_removes_the_tree_and_nothing_beside_it(served, tmp_path):
    await store_files(served.endpoint, tmp_path, ["t/2025/x", "t/2025/sub/y", "t/2025x", "t/2024/z"])
    async with Client(served.endpoint) as client:
        assert [r.name for r in await client.remove(prefix="t/2025/", dry_run=True)] == ["t/2025/sub/y", "t/2025/x"]
        assert await stored(served.endpoint, "t/") == ["t/2024/z", "t/2025/sub/y", "t/2025/x", "t/2025x"]
        got = await client.remove(prefix="t/2025/")
    assert [(r.name, r.status) for r in got] == [("t/2025/sub/y", "removed"), ("t/2025/x", "removed")]
    assert await stored(served.endpoint, "t/") == ["t/2024/z", "t/2025x"]


def test_a_prefix_is_removed_a_page_at_a_time(served, tmp_path):
    names = [f"p/{i:02}" for i in range(5)]
    asyncio.run(store_files(served.endpoint, tmp_path, names))
    with RawPeer(served.endpoint) as peer:
        peer.send_event(Remove(1, prefix="p/", limit=2))
        first = peer.expect(1, RemoveOk)
        assert first.names == ("p/00", "p/01") and all(r.ok for r in first.results) and first.more
        peer.send_event(Remove(2, prefix="p/", after="p/01", limit=3))
        rest = peer.expect(2, RemoveOk)
        assert rest.names == ("p/02", "p/03", "p/04") and not rest.more
        peer.send_event(ListRequest(3, "p/"))
        assert peer.expect(3, ListPage).entries == ()


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", ".zfile/catalog.db", "a\x00b", "a//b", "a/./b"])
async def test_hostile_names_are_refused_one_by_one(served, tmp_path, name):
    await store_files(served.endpoint, tmp_path, ["h/keep"])
    before = snapshot(served.top, served.root)
    async with Client(served.endpoint) as client:
        got = await client.remove([name, "h/keep"])
    assert got[0].status == "error" and got[0].error.code is ErrorCode.BAD_REQUEST, got[0]
    assert got[1].status == "removed"
    assert snapshot(served.top, served.root) == before
    assert (served.root / ".zfile" / "catalog.db").exists()


@pytest.mark.parametrize("prefix", ["../", "/etc/", ".zfile/"])
async def test_a_hostile_prefix_refuses_the_whole_request(served, prefix):
    async with Client(served.endpoint) as client:
        with pytest.raises(RemoteError) as info:
            await client.remove(prefix=prefix)
        assert info.value.code is ErrorCode.BAD_REQUEST
        assert [r.status for r in await client.remove(["never-stored"])] == ["not found"]  # still serving


def test_a_malformed_remove_gets_an_error(served):
    with RawPeer(served.endpoint) as peer:
        peer.send_event(Remove(1, names=("a",), prefix="d/"))
        peer.expect_error(1, ErrorCode.BAD_REQUEST.value)
        peer.send_map({"v": 4, "t": "REMOVE", "id": 2, "names": "a"})
        peer.expect_error(2, ErrorCode.BAD_REQUEST.value)


@pytest.mark.slow
def test_a_download_under_way_finishes_with_the_old_bytes(served, tmp_path):
    """The GET is held mid-file (no more credit) while another connection
    removes the file: the rest of it still arrives, byte for byte."""
    size = 24 * MiB
    asyncio.run(store_files(served.endpoint, tmp_path, ["big.bin"], size))
    src = tmp_path / "src" / "big.bin"
    data = src.read_bytes()
    with RawPeer(served.endpoint) as reader, RawPeer(served.endpoint) as remover:
        reader.send_event(Get(1, "big.bin", MiB))
        meta = reader.expect(1, GetMeta)
        assert meta.size == size
        got = bytearray(reader.expect(1, Chunk).data)
        assert len(got) == MiB  # and no more without credit
        remover.send_event(Remove(9, names=("big.bin",)))
        assert remover.expect(9, RemoveOk).results[0].ok
        remover.send_event(ListRequest(10, "big"))
        assert remover.expect(10, ListPage).entries == ()
        assert not (served.root / "big.bin").exists()
        reader.send_event(Credit(1, size))
        while len(got) < size:
            chunk = reader.expect(1, Chunk)
            assert chunk.offset == len(got)
            got += chunk.data
    assert bytes(got) == data


@pytest.mark.slow
def test_on_s3_a_download_under_way_ends_with_a_clear_error(s3, tmp_path):
    """S3 keeps no deleted object for a reader (docs/s3.md): the next ranged
    GET of a download that outlives the removal fails, and the daemon says so
    instead of sending other bytes."""
    d = start_daemon(
        tmp_path / "unused", tmp_path / "daemon.log", "--store", s3.location(), "--s3-endpoint", s3.endpoint
    )
    try:
        size = 24 * MiB
        asyncio.run(store_files(d.endpoint, tmp_path, ["big.bin"], size))
        data = (tmp_path / "src" / "big.bin").read_bytes()
        with RawPeer(d.endpoint) as reader, RawPeer(d.endpoint) as remover:
            reader.send_event(Get(1, "big.bin", MiB))
            reader.expect(1, GetMeta)
            got = bytearray(reader.expect(1, Chunk).data)
            remover.send_event(Remove(9, names=("big.bin",)))
            assert remover.expect(9, RemoveOk).results[0].ok
            reader.send_event(Credit(1, size))
            while True:
                event = reader.recv_event()
                if isinstance(event, Chunk):
                    assert event.data == data[len(got) : len(got) + len(event.data)]
                    got += event.data
                    continue
                assert "deleted from the store while being read" in event.message, event
                break
        assert len(got) < size
    finally:
        assert d.stop() == 0, d.log_text()


async def test_move_renames_and_refuses_to_replace_without_clobber(served, tmp_path):
    await store_files(served.endpoint, tmp_path, ["m/a", "m/b"])
    async with Client(served.endpoint) as client:
        before = await client.stat("m/a")
        with pytest.raises(RemoteError) as info:
            await client.move("m/a", "m/b")
        assert info.value.code is ErrorCode.EXISTS
        moved = await client.move("m/a", "m/sub/c")
        assert moved.name == "m/sub/c" and (moved.digest, moved.received) == (before.digest, before.received)
        assert (await client.stat("m/sub/c")) == moved
        with pytest.raises(RemoteError) as info:
            await client.stat("m/a")
        assert info.value.code is ErrorCode.NOT_FOUND
        await client.move("m/sub/c", "m/b", clobber=True)
        assert (await client.stat("m/b")).digest == before.digest
    assert await stored(served.endpoint, "m/") == ["m/b"]
    assert "moved name='m/a' to='m/sub/c'" in served.log_text()


@pytest.mark.parametrize("to", ["../x", "/etc/passwd", ".zfile/catalog.db", "a\x00b", "a//b", "mv"])
async def test_move_to_a_hostile_name_is_refused_and_changes_nothing(served, tmp_path, to):
    await store_files(served.endpoint, tmp_path, ["mv/keep"])
    before = snapshot(served.top, served.root)
    async with Client(served.endpoint) as client:
        with pytest.raises(RemoteError) as info:
            await client.move("mv/keep", to)
        assert info.value.code is ErrorCode.BAD_REQUEST
        assert (await client.stat("mv/keep")).name == "mv/keep"
    assert snapshot(served.top, served.root) == before


async def test_stat_of_missing_and_hostile_names(served):
    async with Client(served.endpoint) as client:
        for name, code in [("never/stored", ErrorCode.NOT_FOUND), ("../etc/passwd", ErrorCode.BAD_REQUEST)]:
            with pytest.raises(RemoteError) as info:
                await client.stat(name)
            assert info.value.code is code


async def test_ping_reports_the_daemon(served):
    from zfile import __version__
    from zfile.protocol.codec import PROTOCOL_VERSION

    async with Client(served.endpoint) as client:
        status = await client.ping()
    assert (status.version, status.protocol, status.curve, status.transfers) == (
        __version__,
        PROTOCOL_VERSION,
        False,
        0,
    )
    assert 0 < status.uptime < 3600 and 0 < status.rtt < 60
    assert status.free is not None and 0 < status.free == pytest.approx(
        os.statvfs(served.root).f_bavail * os.statvfs(served.root).f_frsize, rel=0.01
    )


def test_ping_counts_a_transfer_in_flight(served, tmp_path):
    asyncio.run(store_files(served.endpoint, tmp_path, ["held.bin"], 4 * MiB))
    with RawPeer(served.endpoint) as peer:
        peer.send_event(Get(1, "held.bin", MiB))  # held after one chunk: no more credit
        peer.expect(1, GetMeta)
        peer.send_event(Ping(2))
        pong = peer.expect(2, Pong)
        peer.send_event(Cancel(1))
        assert pong.transfers == 1
        peer.send_event(Ping(3))
        assert peer.expect(3, Pong).transfers == 0


def test_a_stream_upload_is_stored_only_when_its_digest_matches(served):
    data = os.urandom(3 * MiB + 11)
    with RawPeer(served.endpoint) as peer:
        for tid, digest in ((1, b"\x00" * 32), (2, blake3.blake3(data).digest())):
            peer.send_event(PutStream(tid, "streams/s.bin", MTIME_NS, 0o640, "blake3"))
            ready = peer.expect(tid, PutReady)
            assert ready.offset == 0
            peer.send_range(tid, data, 0, len(data), ready.credit)
            peer.send_event(PutEnd(tid, digest, size=len(data)))
            if tid == 1:
                peer.expect_error(1, ErrorCode.BAD_REQUEST.value)
                assert not (served.root / "streams" / "s.bin").exists()
            else:
                ok = peer.expect(2, PutOk)
                assert ok.size == len(data) and ok.digest == digest
    assert (served.root / "streams" / "s.bin").read_bytes() == data
    assert partials(served.root) == {}


def test_a_stream_goes_into_a_partial_as_it_comes_and_is_dropped_when_it_stops_short(served):
    data = os.urandom(2 * MiB + 5)
    with RawPeer(served.endpoint) as peer:
        for tid, end in ((11, Cancel(11)), (12, PutEnd(12, blake3.blake3(data).digest(), size=len(data) + 1))):
            peer.send_event(PutStream(tid, "streams/short.bin", MTIME_NS, 0o644, "blake3"))
            ready = peer.expect(tid, PutReady)
            peer.send_range(tid, data, 0, len(data), ready.credit)
            peer.expect(tid, Credit)  # granted for bytes written: they are in the partial, not spooled
            [held] = partials(served.root).values()
            assert MiB <= held <= len(data)
            peer.send_event(end)
            if tid == 12:
                peer.expect_error(12, ErrorCode.BAD_REQUEST.value)
            deadline = time.monotonic() + 10  # the abort runs after the answer, in the stream's own task
            while partials(served.root) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert partials(served.root) == {}
            assert not (served.root / "streams" / "short.bin").exists()
    assert list((served.root / ".zfile" / "tmp").iterdir()) == []


@pytest.mark.parametrize("name", ["../x", ".zfile/catalog.db", "/abs"])
def test_a_stream_to_a_hostile_name_is_refused_before_any_byte(served, name):
    before = snapshot(served.top, served.root)
    with RawPeer(served.endpoint) as peer:
        peer.send_event(PutStream(1, name, MTIME_NS, 0o644, "blake3"))
        peer.expect_error(1, ErrorCode.BAD_REQUEST.value)
    assert snapshot(served.top, served.root) == before


async def test_a_check_answers_from_the_catalog_and_holds_hostile_names_absent(served, tmp_path):
    await store_files(served.endpoint, tmp_path, ["chk/a.bin", "chk/b.bin"], size=300)
    a = tmp_path / "src" / "chk/a.bin"
    hostile = ["../chk/a.bin", "/chk/a.bin", "chk/a.bin\x00", "chk/./a.bin", "n" * 4097, ".zfile/catalog.db", ""]
    before = snapshot(served.top, served.top / "a" / "store" / ".zfile")
    async with Client(served.endpoint) as client:
        got = await client.check(["chk/a.bin", "chk/b.bin", *hostile], [300] * (2 + len(hostile)), None)
        assert got == [(CHECK_SAME, digest_of(a)), (CHECK_SAME, digest_of(tmp_path / "src" / "chk/b.bin"))] + [
            (CHECK_ABSENT, None)
        ] * len(hostile)
        moved = await client.check(["chk/a.bin", "chk/b.bin"], [300, 300], [MTIME_NS, MTIME_NS + 1])
        assert moved == [(CHECK_SAME, digest_of(a)), (CHECK_DIFFERS, None)]
    assert snapshot(served.top, served.top / "a" / "store" / ".zfile") == before
    assert served.proc.poll() is None
