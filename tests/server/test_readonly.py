"""A read-only daemon (``zfile serve --read-only``) over a real socket: every
request that would change the store is refused with ``read-only`` before a
byte is stored, while reads, listings, STAT, CHECK and PING go on and the daemon
stays up."""

from __future__ import annotations

import asyncio
import os

import blake3
import pytest

from zfile.client.client import Client
from zfile.errors import ErrorCode, RemoteError
from zfile.protocol.events import (
    CHECK_SAME,
    Move,
    Ping,
    Pong,
    Put,
    PutFile,
    PutMany,
    PutStream,
    Remove,
)

from ..conftest import start_daemon
from ..rawpeer import MTIME_NS, RawPeer, digest_of, make_file, partials, snapshot


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A daemon serving, read-only, a store that a writable daemon filled first."""
    top = tmp_path_factory.mktemp("ro")
    root = top / "store"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZFILE_CONFIG", os.devnull)
        writer = start_daemon(root, top / "daemon.log")
        try:

            async def fill() -> None:
                async with Client(writer.endpoint) as client:
                    await client.put(make_file(top / "src" / "keep.bin", 5000), "data/keep.bin")

            asyncio.run(fill())
        finally:
            assert writer.stop() == 0, writer.log_text()
        d = start_daemon(root, top / "daemon.log", "--read-only")
    d.top = top
    yield d
    assert d.stop() == 0, d.log_text()


def _refused(served, event, what: str) -> None:
    before = snapshot(served.top, served.top / "daemon.log")
    with RawPeer(served.endpoint) as peer:
        peer.send_event(event)
        err = peer.expect_error(event.id, ErrorCode.READ_ONLY.value)
    assert "read-only" in err.message and what in err.message, err
    assert snapshot(served.top, served.top / "daemon.log") == before
    assert partials(served.root) == {}
    assert served.proc.poll() is None


def test_a_put_is_refused_before_put_ready(read_only):
    _refused(read_only, Put(1, "new.bin", 10 << 20, MTIME_NS, 0o644, "blake3"), "PUT of 'new.bin'")


def test_an_inline_put_is_refused(read_only):
    data = b"x" * 100
    put = Put(2, "inline.txt", len(data), MTIME_NS, 0o644, "blake3", data=data, digest=blake3.blake3(data).digest())
    _refused(read_only, put, "PUT of 'inline.txt'")


def test_an_overwrite_of_a_stored_file_is_refused(read_only):
    _refused(read_only, Put(3, "data/keep.bin", 5, MTIME_NS, 0o644, "blake3"), "'data/keep.bin'")


def test_a_chain_upload_is_refused(read_only):
    put = Put(4, "chained.bin", 10, MTIME_NS, 0o644, "blake3", chain=("tcp://127.0.0.1:9",))
    _refused(read_only, put, "PUT of 'chained.bin'")


def test_a_put_many_is_refused_whole(read_only):
    files = tuple(PutFile(f"m/{i}", 1, MTIME_NS, 0o644, blake3.blake3(b"a").digest(), data=b"a") for i in range(3))
    _refused(read_only, PutMany(5, "blake3", files), "PUT-MANY of 3 files")


def test_a_put_stream_is_refused(read_only):
    _refused(read_only, PutStream(6, "piped.bin", MTIME_NS, 0o644, "blake3"), "PUT-STREAM of 'piped.bin'")


def test_remove_by_name_and_by_prefix_are_refused(read_only):
    _refused(read_only, Remove(7, names=("data/keep.bin",)), "REMOVE of 'data/keep.bin'")
    _refused(read_only, Remove(8, prefix="data/"), "REMOVE of the files under 'data/'")


def test_a_move_is_refused(read_only):
    _refused(read_only, Move(9, "data/keep.bin", "moved.bin"), "MOVE of 'data/keep.bin'")


async def test_reads_listings_stat_check_and_ping_go_on(read_only, tmp_path):
    async with Client(read_only.endpoint) as client:
        with pytest.raises(RemoteError) as refused:
            await client.put(make_file(tmp_path / "up.bin", 100), "up.bin")
        assert refused.value.code is ErrorCode.READ_ONLY
        got = await client.get("data/keep.bin", tmp_path / "got.bin")
        assert got.size == 5000
        assert digest_of(tmp_path / "got.bin") == digest_of(read_only.top / "src" / "keep.bin")
        assert [e.name async for e in client.list("")] == ["data/keep.bin"]
        assert (await client.stat("data/keep.bin")).size == 5000
        keep = digest_of(read_only.top / "src" / "keep.bin")
        assert await client.check(["data/keep.bin"], [5000], [MTIME_NS]) == [(CHECK_SAME, keep)]
        assert (await client.ping()).read_only is True
    with RawPeer(read_only.endpoint) as peer:
        peer.send_event(Ping(20))
        pong = peer.expect(20, Pong)
        assert isinstance(pong, Pong) and pong.read_only is True
    assert "refused: read-only" in read_only.log_text()
    assert read_only.proc.poll() is None
