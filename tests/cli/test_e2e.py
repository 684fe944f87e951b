"""End to end: the CLI and the library against a real daemon subprocess,
with each store backend: a local directory, and an S3 bucket on a real
SeaweedFS (tests/seaweed.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import blake3
import pytest

from zfile.client.client import Client
from zfile.errors import ErrorCode, RemoteError
from zfile.protocol.machine import DEFAULT_CHUNK_SIZE
from zfile.transport.endpoint import parse_endpoint

from ..conftest import start_daemon, zfile_cli

MiB = 1 << 20

SIZES = {
    "empty.bin": 0,
    "one.bin": 1,
    "inline-max.bin": 256 << 10,
    "inline-max-plus-one.bin": (256 << 10) + 1,
    "one-chunk.bin": DEFAULT_CHUNK_SIZE,
    "one-chunk-plus-one.bin": DEFAULT_CHUNK_SIZE + 1,
    "fifty-mib.bin": 50 * MiB,
}


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def daemon(request, tmp_path: Path):
    """A daemon on a fresh store of each backend; for ``s3``, ``daemon.s3``
    holds (endpoint, location)."""
    extra: tuple[str, ...] = ()
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        location = s3.location()
        extra = ("--store", location, "--s3-endpoint", s3.endpoint)
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", *extra)
    if extra:
        d.s3 = (s3.endpoint, location)
    yield d
    assert d.stop() == 0, d.log_text()


def stored_bytes(daemon, name: str) -> bytes:
    """What the daemon's store holds under ``name``, read behind its back."""
    if not hasattr(daemon, "s3"):
        return (daemon.root / name).read_bytes()
    import botocore.session

    from zfile.store.s3 import parse_location

    endpoint, location = daemon.s3
    bucket, prefix = parse_location(location)
    client = botocore.session.Session().create_client("s3", endpoint_url=endpoint)
    return client.get_object(Bucket=bucket, Key=prefix + name)["Body"].read()


def digest_of(path: Path) -> str:
    return blake3.blake3().update_mmap(str(path)).hexdigest()


def make_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    os.utime(path, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    path.chmod(0o640)
    return path


def same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.mark.slow
def test_sizes_round_trip_through_the_cli(daemon, tmp_path):
    src = tmp_path / "src"
    for name, size in SIZES.items():
        make_file(src / name, size)
    files = [str(src / n) for n in SIZES]
    zfile_cli("send", *files, "--to", daemon.endpoint)
    back = tmp_path / "back"
    zfile_cli("get", *SIZES, "--from", daemon.endpoint, "-o", str(back))
    for name, size in SIZES.items():
        got = back / name
        assert got.stat().st_size == size
        assert got.read_bytes() == (src / name).read_bytes(), name
        assert got.stat().st_mtime_ns == 1_600_000_000_123_456_789
        assert got.stat().st_mode & 0o777 == 0o640
        assert stored_bytes(daemon, name) == (src / name).read_bytes()

    listing = json.loads(zfile_cli("ls", "-R", "--from", daemon.endpoint, "--json").stdout)
    by_name = {e["name"]: e for e in listing}
    assert set(by_name) == set(SIZES)
    for name, size in SIZES.items():
        assert by_name[name]["size"] == size
        assert by_name[name]["digest"] == digest_of(src / name)
        assert by_name[name]["algo"] == "blake3"
    # no temp files left beside the destinations
    assert sorted(p.name for p in back.iterdir()) == sorted(SIZES)


@pytest.mark.slow
def test_odd_names_and_nested_directories(daemon, tmp_path):
    tree = tmp_path / "photos"
    make_file(tree / "with space.jpg", 1000)
    make_file(tree / "naïve café" / "ünïcödé 名前.txt", 5000)
    make_file(tree / "a" / "b" / "c" / "deep.bin", 3 * MiB + 7)
    make_file(tree / "a" / "empty", 0)
    single = make_file(tmp_path / "top level.bin", 12345)
    zfile_cli("send", str(tree), str(single), "--to", daemon.endpoint)

    names = {e["name"] for e in json.loads(zfile_cli("ls", "-R", "--from", daemon.endpoint, "--json").stdout)}
    assert names == {
        "photos/with space.jpg",
        "photos/naïve café/ünïcödé 名前.txt",
        "photos/a/b/c/deep.bin",
        "photos/a/empty",
        "top level.bin",
    }
    back = tmp_path / "back"
    zfile_cli("get", "photos/", "top level.bin", "--from", daemon.endpoint, "-o", str(back))
    same_tree(tree, back / "photos")
    assert (back / "top level.bin").read_bytes() == single.read_bytes()

    # a prefix without the trailing slash means the same directory
    back2 = tmp_path / "back2"
    zfile_cli("get", "photos/a", "--from", daemon.endpoint, "-o", str(back2))
    same_tree(tree / "a", back2 / "a")


@pytest.mark.slow
def test_two_thousand_small_files(daemon, tmp_path):
    tree = tmp_path / "many"
    expected = {}
    for i in range(2000):
        data = os.urandom(i % 5000)
        path = tree / f"d{i % 20:02d}" / f"f{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[f"many/d{i % 20:02d}/f{i:04d}.bin"] = blake3.blake3(data).hexdigest()
    out = zfile_cli("send", str(tree), "--to", daemon.endpoint)
    assert "sent 2000 file(s)" in out.stdout
    listing = json.loads(zfile_cli("ls", "-R", "many/", "--from", daemon.endpoint, "--json").stdout)
    assert {e["name"]: e["digest"] for e in listing} == expected
    back = tmp_path / "back"
    zfile_cli("get", "many/", "--from", daemon.endpoint, "-o", str(back), "-q")
    same_tree(tree, back / "many")


@pytest.mark.slow
def test_no_clobber_gets_exists(daemon, tmp_path):
    f = make_file(tmp_path / "x.bin", 10)
    zfile_cli("send", str(f), "--to", daemon.endpoint)
    make_file(f, 11)  # changed: sending it would replace the stored file
    again = zfile_cli("send", str(f), "--to", daemon.endpoint, "--no-clobber", check=False)
    assert again.returncode == 1
    assert "zfile: error:" in again.stderr and "exists" in again.stderr
    assert "Traceback" not in again.stderr
    assert len(stored_bytes(daemon, "x.bin")) == 10


@pytest.mark.slow
def test_replace_by_name(daemon, tmp_path):
    f = tmp_path / "v.bin"
    f.write_bytes(b"one" * 100_000)
    zfile_cli("send", str(f), "--to", daemon.endpoint)
    f.write_bytes(b"two" * 200_000)
    zfile_cli("send", str(f), "--to", daemon.endpoint)
    listing = json.loads(zfile_cli("ls", "-R", "--from", daemon.endpoint, "--json").stdout)
    assert [(e["name"], e["size"]) for e in listing] == [("v.bin", 600_000)]
    assert stored_bytes(daemon, "v.bin") == b"two" * 200_000


@pytest.mark.slow
def test_missing_file_is_a_clean_error(daemon, tmp_path):
    res = zfile_cli("get", "nope.bin", "--from", daemon.endpoint, "-o", str(tmp_path), check=False)
    assert res.returncode == 1
    assert res.stderr.startswith("zfile: error:") and "nope.bin" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["send", "send-tree", "send-tree-all", "get", "ls"])
@pytest.mark.parametrize("where", ["tcp", "ipc"])
def test_a_dead_endpoint_fails_at_once(tmp_path, command, where):
    from ..conftest import free_port

    endpoint = f"127.0.0.1:{free_port()}" if where == "tcp" else f"ipc://{tmp_path}/no-daemon.sock"
    for i in range(300):  # small files, in batches, and one large one
        make_file(tmp_path / "tree" / f"f{i}.bin", 10)
    make_file(tmp_path / "tree" / "large.bin", 3 * MiB)
    args = {
        "send": ["send", str(make_file(tmp_path / "x.bin", 10)), "--to", endpoint],
        # The quick check's listing meets the dead endpoint before any file is tried...
        "send-tree": ["send", str(tmp_path / "tree"), "--to", endpoint],
        # ...without it every file meets it, and the line counts them.
        "send-tree-all": ["send", "-I", str(tmp_path / "tree"), "--to", endpoint],
        "get": ["get", "x.bin", "--from", endpoint, "-o", str(tmp_path / "out")],
        "ls": ["ls", "--from", endpoint],
    }[command]
    # A refused connection is known at once, not after the hour's timeout
    # (the run is bounded far from both, so that a loaded machine does not matter).
    res = zfile_cli(*args, "--timeout", "3600", check=False, timeout=60)
    assert res.returncode == 1
    # One line, with the same sentence for every command, however many files.
    [line] = res.stderr.strip().splitlines()
    sentence = f"nothing accepts connections at {parse_endpoint(endpoint)} (is `zfile serve` running there?)"
    assert line == f"zfile: error: {sentence}" + (" (301 files)" if command == "send-tree-all" else "")


@pytest.mark.slow
def test_a_daemon_that_is_up_but_silent_gets_the_whole_timeout(tmp_path):
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    # Stopped, its port still accepts TCP connections: it is up but answers nothing.
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        began = time.monotonic()
        res = zfile_cli("ls", "--from", daemon.endpoint, "--timeout", "1.5", check=False)
        waited = time.monotonic() - began
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
        assert daemon.stop() == 0
    assert res.returncode == 1 and waited >= 1.5
    # The kernel still takes the TCP connection, so that much is said.
    assert res.stderr == (
        f"zfile: error: {parse_endpoint(daemon.endpoint)} took the connection but completed no ZeroMQ "
        "handshake within 1.5 s: a daemon there is stopped or hung, or another service has the port\n"
    )


def test_another_service_on_the_port_is_told_apart_from_silence(tmp_path):
    """A peer that takes the connection and speaks something else (here an
    SSH-like banner) is named as such when the timeout ends the command."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    held = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        res = zfile_cli("ping", f"127.0.0.1:{port}", "--timeout", "1", check=False)
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert res.returncode == 1
    assert "took the connection but completed no ZeroMQ handshake within 1 s" in res.stderr, res.stderr


@pytest.mark.slow
def test_usage_error_exits_2(tmp_path):
    res = zfile_cli("send", check=False)
    assert res.returncode == 2
    res = zfile_cli("ls", "--from", "ftp://x", check=False)
    assert res.returncode == 2


@pytest.mark.slow
async def test_library_put_get_list(daemon, tmp_path):
    src = make_file(tmp_path / "lib.bin", 3 * MiB + 5)
    async with Client(daemon.endpoint) as client:
        put = await client.put(src, "dir/lib.bin")
        assert put.size == src.stat().st_size
        assert put.digest.hex() == digest_of(src)
        got = await client.get("dir/lib.bin", tmp_path / "out" / "lib.bin")
        assert got.path.read_bytes() == src.read_bytes()
        entries = [e async for e in client.list("dir/")]
        assert [(e.name, e.size, e.digest) for e in entries] == [("dir/lib.bin", put.size, put.digest)]
        with pytest.raises(RemoteError) as info:
            await client.put(src, "../escape.bin")
        assert info.value.code is ErrorCode.BAD_REQUEST
        assert not (daemon.root.parent / "escape.bin").exists()


@pytest.mark.slow
async def test_listing_pages(daemon, tmp_path):
    async with Client(daemon.endpoint) as client:
        for i in range(25):
            f = tmp_path / f"p{i:02d}"
            f.write_bytes(bytes([i]))
            await client.put(f)
        names = [e.name async for e in client.list("", page_size=4)]
        assert names == [f"p{i:02d}" for i in range(25)]


@pytest.mark.slow
def test_sigterm_exits_zero(daemon):
    assert daemon.stop() == 0
    assert "stopped" in daemon.log_text()


class Interrupted(Exception):
    """Raised from a progress callback to cut a send short."""


@pytest.mark.slow
async def test_an_interrupted_send_resumes_with_the_same_command(daemon, tmp_path):
    import re

    src = make_file(tmp_path / "r.bin", 40 * MiB + 3)
    seen = 0

    def progress(n: int) -> None:
        nonlocal seen
        seen += n
        if seen >= 28 * MiB:  # the daemon holds at least 20 MiB: two whole 8 MiB parts on S3
            raise Interrupted

    async with Client(daemon.endpoint) as client:
        with pytest.raises(Interrupted):
            await client.put(src, "r.bin", progress=progress)
        deadline = time.monotonic() + 30  # the daemon suspends the upload once it sees the CANCEL
        while "result=suspended" not in daemon.log_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert [e.name async for e in client.list()] == []  # nothing visible before the commit
    zfile_cli("send", str(src), "--to", daemon.endpoint)
    resumed = re.search(r"resuming upload of 'r.bin' at byte (\d+) of (\d+)", daemon.log_text())
    assert resumed is not None, daemon.log_text()
    assert 0 < int(resumed.group(1)) < src.stat().st_size
    assert stored_bytes(daemon, "r.bin") == src.read_bytes()


@pytest.mark.slow
def test_get_of_a_prefix_fetches_the_tree_under_it(daemon, tmp_path):
    src = tmp_path / "src"
    sizes = {"d/a.bin": 10, "d/e/b.bin": 300 << 10, "d/e/f/c.bin": 9 * MiB + 1, "dx.bin": 5}
    for name, size in sizes.items():
        make_file(src / name, size)
    zfile_cli("send", str(src / "d"), str(src / "dx.bin"), "--to", daemon.endpoint)
    out = tmp_path / "out"
    zfile_cli("get", "d/", "--from", daemon.endpoint, "-o", str(out))
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == ["d/a.bin", "d/e/b.bin", "d/e/f/c.bin"]
    for name in got:
        assert (out / name).read_bytes() == (src / name).read_bytes(), name


HOSTILE = ["/tmp/zfile-e2e-absolute.bin", "../escape.bin", "ok/../../escape.bin", "a\x00b.bin", "bell\x07.bin",
           "d/" + "c" * 256, "n" * 4097, ".zfile/uploads/x.blake3", ""]  # fmt: skip


@pytest.mark.slow
def test_hostile_names_are_refused_and_nothing_is_stored(daemon):
    from zfile.protocol.events import Get, Put

    from ..rawpeer import MTIME_NS, RawPeer

    bad = ErrorCode.BAD_REQUEST.value
    data = b"hostile"
    digest = blake3.blake3(data).digest()
    with RawPeer(daemon.endpoint) as peer:
        for k, name in enumerate(HOSTILE):
            peer.send_event(Put(100 + k, name, len(data), MTIME_NS, 0o644, "blake3", data=data, digest=digest))
            peer.expect_error(100 + k, bad)
            peer.send_event(Put(200 + k, name, 20 * MiB, MTIME_NS, 0o644, "blake3"))
            peer.expect_error(200 + k, bad)
            peer.send_event(Get(300 + k, name, MiB))
            peer.expect_error(300 + k, bad)
    assert daemon.proc.poll() is None
    assert json.loads(zfile_cli("ls", "-R", "--from", daemon.endpoint, "--json").stdout) == []
    assert not Path("/tmp/zfile-e2e-absolute.bin").exists()
    if hasattr(daemon, "s3"):
        import botocore.session

        from zfile.store.s3 import parse_location

        endpoint, location = daemon.s3
        bucket, prefix = parse_location(location)
        client = botocore.session.Session().create_client("s3", endpoint_url=endpoint)
        assert client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []) == []
        assert client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []) == []
