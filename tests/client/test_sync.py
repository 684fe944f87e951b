"""The blocking client, from plain code, from threads and from inside a running loop."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from zfile.client.config import ClientConfig
from zfile.client.sync import SyncClient
from zfile.errors import ErrorCode, PeerUnreachable, RemoteError, TransportError
from zfile.transport.endpoint import EndpointError

from ..conftest import free_port


def client_threads() -> int:
    return sum(t.name == "zfile-sync-client" for t in threading.enumerate())


def make(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.slow
def test_put_get_list_round_trip(daemon, tmp_path):
    small = make(tmp_path / "small.bin", 1000)
    large = make(tmp_path / "large.bin", 5 << 20)  # streamed, not inline
    seen: list[int] = []
    with SyncClient(daemon.endpoint) as c:
        assert c.put(small).name == "small.bin"
        assert c.put(large, "dir/large.bin", progress=seen.append).size == 5 << 20
        assert [e.name for e in c.list()] == ["dir/large.bin", "small.bin"]
        got = c.get("dir/large.bin", tmp_path / "out" / "large.bin")
    assert sum(seen) == 5 << 20
    assert got.path.read_bytes() == large.read_bytes() == (daemon.root / "dir/large.bin").read_bytes()


def test_trees(daemon, tmp_path):
    tree = tmp_path / "logs"
    (tree / "a").mkdir(parents=True)
    make(tree / "a" / "1.log", 100)
    make(tree / "2.log", 300 << 10)
    with SyncClient(daemon.endpoint) as c:
        sent = c.send_paths([tree])
        got = c.get_paths(["logs/"], tmp_path / "back")
        many = c.put_many([(tree / "2.log", "copy.log"), (tmp_path / "absent", "absent")])
    assert [o.name for o in sent] == ["logs/2.log", "logs/a/1.log"] and all(o.error is None for o in sent)
    assert all(o.error is None for o in got)
    assert (tmp_path / "back/logs/a/1.log").read_bytes() == (tree / "a" / "1.log").read_bytes()
    assert many[0].name == "copy.log" and isinstance(many[1], Exception)


def test_errors_are_raised_in_the_caller(daemon, tmp_path):
    with SyncClient(daemon.endpoint) as c:
        with pytest.raises(RemoteError) as info:
            c.get("nothing.bin", tmp_path / "nothing.bin")
        assert info.value.code is ErrorCode.NOT_FOUND
        assert c.list("no-such-prefix") == []  # still usable after an error


@pytest.mark.slow
def test_threads_share_one_client(daemon, tmp_path):
    files = [make(tmp_path / f"f{i}.bin", (i + 1) << 19) for i in range(6)]
    with SyncClient(daemon.endpoint) as c, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(c.put, files))
    assert [r.name for r in results] == [f.name for f in files]
    for f in files:
        assert (daemon.root / f.name).read_bytes() == f.read_bytes()


async def test_works_inside_a_running_loop(daemon, tmp_path):
    src = make(tmp_path / "x.bin", 10)
    with SyncClient(daemon.endpoint) as c:  # its loop is its own thread's, not this one
        assert c.put(src).size == 10


def test_close_is_idempotent_and_final(daemon):
    c = SyncClient(daemon.endpoint)
    c.connect()
    assert client_threads() == 1
    c.close()
    c.close()
    assert client_threads() == 0
    with pytest.raises(TransportError, match="not connected"):
        c.list()


def test_no_daemon_is_unreachable():
    with SyncClient(ClientConfig(f"tcp://127.0.0.1:{free_port()}", timeout=30)) as c, pytest.raises(PeerUnreachable):
        c.list()
    assert client_threads() == 0


def test_bad_endpoint_fails_at_once():
    with pytest.raises(EndpointError):
        SyncClient("udp://somewhere")


@pytest.mark.slow
def test_file_operations_block_and_answer(daemon, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(1000))
    with SyncClient(daemon.endpoint) as c:
        c.put(src, "ops/a")
        c.put(src, "ops/b")
        assert c.stat("ops/a").size == 1000
        with pytest.raises(RemoteError) as info:
            c.move("ops/a", "ops/b")
        assert info.value.code is ErrorCode.EXISTS
        assert c.move("ops/a", "ops/c").name == "ops/c"
        assert [(r.name, r.status) for r in c.remove(["ops/b", "ops/nope"])] == [
            ("ops/b", "removed"),
            ("ops/nope", "not found"),
        ]
        assert [r.name for r in c.remove(prefix="ops/", dry_run=True)] == ["ops/c"]
        assert [e.name for e in c.list("ops/")] == ["ops/c"]
        assert c.ping().transfers == 0
