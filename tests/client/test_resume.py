"""Resume in both directions, never splicing a changed source, and the sweep
of partials nobody comes back for."""

from __future__ import annotations

import asyncio
import os
import re
import time

import pytest

from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.client.partfiles import part_paths
from zfile.errors import ErrorCode, LocalFileError, PeerUnreachable, RemoteError

from ..conftest import start_daemon, zfile_cli
from ..rawpeer import MTIME_NS, MiB, digest_of, make_file, partials, restart

RESUMED = re.compile(r"resuming upload of '([^']+)' at byte (\d+) of (\d+)")
SENT = re.compile(r"dir=out name='([^']+)' bytes=(\d+) .* result=ok")


class Interrupted(Exception):
    """Raised from a progress callback to cut a transfer short."""


def stop_after(limit: int):
    seen = 0

    def progress(n: int) -> None:
        nonlocal seen
        seen += n
        if seen >= limit:
            raise Interrupted(seen)

    return progress


@pytest.fixture
def d(tmp_path):
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    yield daemon
    assert daemon.stop() == 0, daemon.log_text()


async def interrupted_put(endpoint: str, src, name: str, after: int) -> None:
    async with Client(endpoint) as client:
        with pytest.raises(Interrupted):
            await client.put(src, name, progress=stop_after(after))


@pytest.mark.slow
async def test_interrupted_send_resumes_with_the_same_command(d, tmp_path):
    src = make_file(tmp_path / "r.bin", 40 * MiB)
    await interrupted_put(d.endpoint, src, "r.bin", 12 * MiB)
    await wait_for(lambda: re.search(r"name='r.bin' .* result=(suspended|failed)", d.log_text()))  # partial final
    held = max(partials(d.root).values())
    assert not (d.root / "r.bin").exists()
    zfile_cli("send", str(src), "--to", d.endpoint)
    name, offset, size = RESUMED.search(d.log_text()).groups()
    assert (name, int(size)) == ("r.bin", src.stat().st_size)
    assert 0 < int(offset) == held
    assert digest_of(d.root / "r.bin") == digest_of(src)
    assert partials(d.root) == {}


@pytest.mark.slow
async def test_interrupted_uploads_release_their_partials(tmp_path):
    """A client that cancels and disconnects at once races the daemon's
    own end of the transfer (peer gone); however that race goes, the partial
    is released: resuming is never answered busy for good.  Now and then the
    CANCEL of a client that closes at once never reaches the daemon; the
    partial is then released when the upload has been idle for the idle
    timeout (2 s here), so the retries below outlast it."""
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--idle-timeout", "2")
    try:
        src = make_file(tmp_path / "p.bin", 12 * MiB)  # over one window: the daemon sends credit
        rounds = 20
        for i in range(rounds):
            await interrupted_put(d.endpoint, src, f"p{i}.bin", 4 * MiB)
        async with Client(ClientConfig(d.endpoint, busy_retries=8, busy_backoff=0.05, busy_backoff_max=1.0)) as client:
            for i in range(rounds):
                assert (await client.put(src, f"p{i}.bin")).digest == digest_of(src)
        assert RESUMED.findall(d.log_text())  # (a partial can be empty if the cancel overtook every chunk)
        assert partials(d.root) == {}
    finally:
        assert d.stop() == 0, d.log_text()


@pytest.mark.slow
async def test_changed_source_with_same_size_and_mtime_is_never_spliced(d, tmp_path):
    """The partial matches by name, size and mtime, so the upload resumes;
    the whole-file digest then fails, the partial is discarded, and the next
    try starts over and stores the new bytes."""
    src = make_file(tmp_path / "s.bin", 20 * MiB, seed=b"old!")
    await interrupted_put(d.endpoint, src, "s.bin", 8 * MiB)
    await wait_for(lambda: partials(d.root) or None)
    make_file(src, 20 * MiB, seed=b"new!")  # same size, mtime set back
    async with Client(d.endpoint) as client:
        with pytest.raises(RemoteError) as info:
            await client.put(src, "s.bin")
        assert info.value.code is ErrorCode.BAD_REQUEST and "digest" in str(info.value)
        assert not (d.root / "s.bin").exists() and partials(d.root) == {}
        assert (await client.put(src, "s.bin")).digest == digest_of(src)
    assert (d.root / "s.bin").read_bytes() == src.read_bytes()


@pytest.mark.slow
async def test_changed_mtime_starts_over(d, tmp_path):
    src = make_file(tmp_path / "m.bin", 20 * MiB, seed=b"one")
    await interrupted_put(d.endpoint, src, "m.bin", 8 * MiB)
    make_file(src, 20 * MiB, seed=b"two", mtime_ns=MTIME_NS + 10**9)
    async with Client(d.endpoint) as client:
        assert (await client.put(src, "m.bin")).digest == digest_of(src)
    assert "resuming upload of 'm.bin'" not in d.log_text()
    assert (d.root / "m.bin").read_bytes() == src.read_bytes()


@pytest.mark.slow
async def test_interrupted_get_resumes_from_its_temp_file(d, tmp_path):
    src = make_file(tmp_path / "g.bin", 40 * MiB)
    dest = tmp_path / "out" / "g.bin"
    part, state = part_paths(dest)
    async with Client(d.endpoint) as client:
        await client.put(src, "g.bin")
        with pytest.raises(Interrupted):
            await client.get("g.bin", dest, progress=stop_after(10 * MiB))
    assert not dest.exists()
    held = part.stat().st_size
    assert 0 < held < src.stat().st_size and state.exists()
    # the same command again, through the CLI: it continues from the temp file
    zfile_cli("get", "g.bin", "--from", d.endpoint, "-o", str(dest.parent))
    assert digest_of(dest) == digest_of(src)
    assert not part.exists() and not state.exists()
    sent = [int(b) for name, b in SENT.findall(d.log_text()) if name == "g.bin"]
    assert sent == [src.stat().st_size - held]  # only the rest travelled


@pytest.mark.slow
async def test_get_whose_source_changed_starts_over(d, tmp_path):
    src = make_file(tmp_path / "c.bin", 30 * MiB, seed=b"first")
    dest = tmp_path / "out" / "c.bin"
    async with Client(d.endpoint) as client:
        await client.put(src, "c.bin")
        with pytest.raises(Interrupted):
            await client.get("c.bin", dest, progress=stop_after(10 * MiB))
        make_file(src, 30 * MiB, seed=b"second")
        await client.put(src, "c.bin")
        offsets = []
        await client.get("c.bin", dest, progress=lambda n: offsets.append(n))
    assert dest.read_bytes() == src.read_bytes()
    assert sum(offsets) == src.stat().st_size  # every byte came again: nothing spliced


@pytest.mark.slow
async def test_partials_swept_after_ttl(tmp_path):
    root, logs = tmp_path / "store", tmp_path / "logs"
    src = make_file(tmp_path / "t.bin", 10 * MiB)
    d = restart(root, logs, "--partial-ttl", "2")
    try:
        await interrupted_put(d.endpoint, src, "t.bin", 4 * MiB)
        await wait_for(lambda: partials(root) or None)
        # the daemon's periodic sweep removes it once unused for 2 s
        await wait_for(lambda: partials(root) == {} or None, timeout=20)
        await wait_for(lambda: "swept 1 partial upload(s)" in d.log_text() or None)
    finally:
        assert d.stop() == 0


@pytest.mark.slow
async def test_partials_kept_within_ttl_and_swept_at_start_after_it(tmp_path):
    root, logs = tmp_path / "store", tmp_path / "logs"
    src = make_file(tmp_path / "t.bin", 10 * MiB)
    d = restart(root, logs)
    await interrupted_put(d.endpoint, src, "t.bin", 4 * MiB)
    await wait_for(lambda: partials(root) or None)
    assert d.stop() == 0
    d = restart(root, logs)  # default TTL, 24 h: kept
    assert len(partials(root)) == 1
    assert d.stop() == 0
    two_days_ago = time.time() - 2 * 86400
    for path in (root / ".zfile" / "tmp").iterdir():
        os.utime(path, (two_days_ago, two_days_ago))
    d = restart(root, logs)
    try:
        assert partials(root) == {}
        assert list((root / ".zfile" / "tmp").iterdir()) == []
    finally:
        assert d.stop() == 0


async def wait_for(probe, timeout: float = 10.0):
    """Poll ``probe`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := probe()) is not None:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {probe}")


@pytest.mark.slow
async def test_a_daemon_that_dies_mid_get_fails_the_get_at_once(tmp_path):
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    src = make_file(tmp_path / "big.bin", 64 * MiB)
    async with Client(d.endpoint) as client:
        await client.put(src, "big.bin")
    killed_at = None

    def kill_once(n: int) -> None:
        nonlocal killed_at
        if killed_at is None:
            killed_at = time.monotonic()
            d.proc.kill()

    try:
        async with Client(ClientConfig(d.endpoint, timeout=3600)) as client:
            with pytest.raises(PeerUnreachable, match="lost the connection"):
                # At once, not after the hour's timeout (a bound far from both,
                # so that a loaded machine does not matter).
                await asyncio.wait_for(client.get("big.bin", tmp_path / "out" / "big.bin", progress=kill_once), 60)
            assert killed_at is not None
    finally:
        d.proc.wait(timeout=10)
    # What arrived is kept for the next run to resume from.
    part, _ = part_paths(tmp_path / "out" / "big.bin")
    assert part.exists()


async def test_a_get_below_a_file_names_the_file_in_the_way(d, tmp_path):
    src = make_file(tmp_path / "g.bin", 4 * MiB)
    (tmp_path / "out").write_text("mine")
    async with Client(d.endpoint) as client:
        await client.put(src, "g.bin")
        with pytest.raises(LocalFileError, match=f"cannot write .*: {tmp_path / 'out'} is not a directory$"):
            await client.get("g.bin", tmp_path / "out" / "sub" / "g.bin")
    assert (tmp_path / "out").read_text() == "mine"
    assert "dir=out name='g.bin'" not in d.log_text()


async def test_a_get_onto_a_directory_fails_before_a_byte_moves(d, tmp_path):
    """A directory at the destination's name is found before the download,
    not by the final rename once the whole file sits in its temp file."""
    src = make_file(tmp_path / "g.bin", 4 * MiB)
    dest = tmp_path / "out" / "g.bin"
    dest.mkdir(parents=True)
    part, state = part_paths(dest)
    async with Client(d.endpoint) as client:
        await client.put(src, "g.bin")
        with pytest.raises(LocalFileError, match="Is a directory"):
            await client.get("g.bin", dest)
    assert dest.is_dir() and not part.exists() and not state.exists()
    assert "dir=out name='g.bin'" not in d.log_text()  # never asked for
    # A symbolic link to a directory is replaced, as rename(2) replaces the link.
    dest.rmdir()
    dest.symlink_to(tmp_path)
    async with Client(d.endpoint) as client:
        await client.get("g.bin", dest)
    assert not dest.is_symlink() and digest_of(dest) == digest_of(src)
