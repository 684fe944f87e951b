"""GET-MANY against a running daemon: each name answered on its own, in
order, within the reply's byte budget, whatever a hostile peer names."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import blake3
import msgpack
import pytest

from zfile.client.client import Client
from zfile.errors import ErrorCode
from zfile.protocol.codec import MAX_MANY_FILES
from zfile.protocol.events import GetMany, GetManyOk, ListPage, ListRequest

from ..rawpeer import RawPeer

BAD = ErrorCode.BAD_REQUEST.value


def store_files(endpoint: str, tmp_path: Path, files: dict[str, bytes]) -> None:
    async def put() -> None:
        async with Client(endpoint) as client:
            for name, data in files.items():
                src = tmp_path / "src" / name
                src.parent.mkdir(parents=True, exist_ok=True)
                src.write_bytes(data)
                await client.put(src, name)

    asyncio.run(put())


def still_serving(peer: RawPeer, tid: int) -> None:
    peer.send_event(ListRequest(tid))
    assert isinstance(peer.expect(tid, ListPage), ListPage)


@pytest.mark.slow
def test_each_name_is_answered_on_its_own_in_order(daemon, tmp_path: Path) -> None:
    files = {"t/a.txt": b"alpha", "t/b.bin": os.urandom(5000), "t/empty": b""}
    store_files(daemon.endpoint, tmp_path, files)
    names = ("t/a.txt", "t/missing", "../escape", "/etc/passwd", "t/\x01ctl", "t/b.bin", "t/empty", "t/a.txt")
    with RawPeer(daemon.endpoint) as peer:
        peer.send_event(GetMany(1, names))
        reply = peer.expect(1, GetManyOk)
        assert isinstance(reply, GetManyOk)
        codes = [f.code for f in reply.files]
        assert codes == ["", "not-found", BAD, BAD, BAD, "", "", ""]
        for name, f in zip(names, reply.files, strict=True):
            if f.ok:
                assert bytes(f.data) == files[name] and f.digest == blake3.blake3(files[name]).digest()
                assert f.algo == "blake3"
                assert f.size == len(files[name]) and f.mode == 0o644
            else:
                assert len(f.message) > 10 and " " in f.message and f.data == b""
        still_serving(peer, 2)
    assert not (daemon.root.parent / "escape").exists()


@pytest.mark.slow
def test_too_many_names_or_a_broken_list_is_refused_whole(daemon, tmp_path: Path) -> None:
    with RawPeer(daemon.endpoint) as peer:
        peer.send_event(GetMany(1, ("x",) * MAX_MANY_FILES))  # the most allowed: answered
        reply = peer.expect(1, GetManyOk)
        assert len(reply.files) == MAX_MANY_FILES and {f.code for f in reply.files} == {"not-found"}
        head = {"v": 4, "t": "GET-MANY", "id": 2, "names": ["x"] * (MAX_MANY_FILES + 1)}
        peer.send_map(head)
        assert "names" in peer.expect_error(2, BAD).message
        for tid, names in ((3, []), (4, "t/a"), (5, [b"t/a"]), (6, [1])):
            peer.send_map({"v": 4, "t": "GET-MANY", "id": tid, "names": names})
            peer.expect_error(tid, BAD)
        peer.send_map({"v": 4, "t": "GET-MANY", "id": 7, "names": ["a"], "most": (4 << 20) + 1})
        peer.expect_error(7, BAD)
        still_serving(peer, 8)


@pytest.mark.slow
def test_files_past_the_reply_budget_are_refused_too_large(daemon, tmp_path: Path) -> None:
    files = {f"t/{i}": bytes([i]) * 1000 for i in range(5)}
    files["t/big"] = os.urandom(3000)
    store_files(daemon.endpoint, tmp_path, files)
    with RawPeer(daemon.endpoint) as peer:
        # 2,500 bytes: t/0 and t/1 fit, t/big does not, t/2 still fits, t/3 does not.
        peer.send_event(GetMany(1, ("t/0", "t/1", "t/big", "t/2", "t/3"), most=2500))
        reply = peer.expect(1, GetManyOk)
        assert [f.code for f in reply.files] == ["", "", "too-large", "too-large", "too-large"]
        assert reply.size == 2000
        peer.send_event(GetMany(2, ("t/big", "t/0"), most=3000))
        reply = peer.expect(2, GetManyOk)
        assert [f.code for f in reply.files] == ["", "too-large"]
        assert bytes(reply.files[0].data) == files["t/big"]
        peer.send_event(GetMany(3, ("t/0",), most=0))
        assert peer.expect(3, GetManyOk).files[0].code == "too-large"


@pytest.mark.slow
def test_a_file_shorter_on_disk_than_its_entry_is_refused_alone(daemon, tmp_path: Path) -> None:
    files = {"t/ok": b"fine", "t/cut": os.urandom(4000)}
    store_files(daemon.endpoint, tmp_path, files)
    (daemon.root / "t" / "cut").write_bytes(b"short now")  # the catalog still says 4000 bytes
    with RawPeer(daemon.endpoint) as peer:
        peer.send_event(GetMany(1, ("t/cut", "t/ok")))
        reply = peer.expect(1, GetManyOk)
        assert reply.files[0].code != "" and "changed" in reply.files[0].message
        assert reply.files[1].ok and bytes(reply.files[1].data) == b"fine"
        still_serving(peer, 2)


@pytest.mark.slow
def test_a_lying_reply_header_never_comes_from_the_daemon(daemon, tmp_path: Path) -> None:
    """The reply's sizes are the data frames' lengths, as the codec checks on the client."""
    files = {f"t/{i}": os.urandom(i * 100) for i in range(4)}
    store_files(daemon.endpoint, tmp_path, files)
    with RawPeer(daemon.endpoint) as peer:
        peer.send_event(GetMany(1, tuple(files)))
        frames = peer.recv()
        heads = msgpack.unpackb(frames[0])["files"]
        assert len(frames) == 1 + len(files)
        assert [h["size"] for h in heads] == [len(f) for f in frames[1:]] == [len(d) for d in files.values()]


@pytest.mark.slow
def test_an_object_store_daemon_answers_through_its_downloads(s3, tmp_path: Path) -> None:
    from ..conftest import start_daemon

    where = ("--store", "s3://zfile-test/gm/", "--s3-endpoint", s3.endpoint)
    d = start_daemon(tmp_path / "unused-root", tmp_path / "daemon.log", *where)
    try:
        files = {"t/a": b"alpha", "t/b": os.urandom(3000), "t/empty": b""}
        store_files(d.endpoint, tmp_path, files)
        with RawPeer(d.endpoint) as peer:
            peer.send_event(GetMany(1, ("t/a", "t/gone", "../x", "t/b", "t/empty"), most=3000))
            reply = peer.expect(1, GetManyOk)
            assert [f.code for f in reply.files] == ["", "not-found", BAD, "too-large", ""]
            assert bytes(reply.files[0].data) == b"alpha" and reply.files[4].data == b""
            peer.send_event(GetMany(2, ("t/b",)))
            assert bytes(peer.expect(2, GetManyOk).files[0].data) == files["t/b"]
    finally:
        assert d.stop() == 0, d.log_text()
