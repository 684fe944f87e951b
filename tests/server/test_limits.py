"""Limits and resources: sizes, names, slots (busy and the client's backoff),
free space, and a disk that fills mid-transfer."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import blake3
import pytest
import zmq

from zfile.client.client import Client, Result
from zfile.client.config import ClientConfig
from zfile.errors import ErrorCode, RemoteError
from zfile.fileio.direct import DirectAppender
from zfile.protocol.codec import decode, encode
from zfile.protocol.events import Cancel, Error, Event, Put, PutOk, PutReady
from zfile.server.config import ServerConfig
from zfile.server.server import Server
from zfile.store.catalog import Catalog
from zfile.store.reserve import Reserve

from ..conftest import free_port, start_daemon, zfile_cli
from ..rawpeer import MTIME_NS, MiB, RawPeer, digest_of, make_file, partials, restart


@pytest.fixture
def small_fs(tmp_path):
    """A 16 MiB tmpfs mounted for this test (root is needed), or None."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow
def test_max_file_size_flag(tmp_path):
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--max-file-size", str(MiB))
    try:
        ok = make_file(tmp_path / "ok.bin", MiB)
        big = make_file(tmp_path / "big.bin", MiB + 1)
        zfile_cli("send", str(ok), "--to", d.endpoint)
        res = zfile_cli("send", str(big), "--to", d.endpoint, check=False)
        assert res.returncode == 1 and "accepts at most 1048576 bytes" in res.stderr
        assert not (d.root / "big.bin").exists() and partials(d.root) == {}
    finally:
        assert d.stop() == 0


@pytest.mark.slow
def test_max_name_bytes_flag(tmp_path):
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--max-name-bytes", "40")
    try:
        src = make_file(tmp_path / "x.bin", 10)
        zfile_cli("send", str(src), "--to", d.endpoint)
        with RawPeer(d.endpoint) as peer:
            peer.send_event(Put(2, "n" * 41, 10, MTIME_NS, 0o644, "blake3"))
            err = peer.expect_error(2, "bad-request")
            assert "the limit is 40 bytes" in err.message
            peer.send_event(Put(3, "n" * 40, 300_000, MTIME_NS, 0o644, "blake3"))
            assert isinstance(peer.expect(3, PutReady), PutReady)
            peer.send_event(Cancel(3))
    finally:
        assert d.stop() == 0


@pytest.mark.slow
async def test_busy_then_backoff_gets_through(tmp_path):
    """--max-transfers 1: while a raw peer holds the one slot, a put answered
    busy retries with backoff and gets through once the slot is released;
    with retries off it fails with busy."""
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--max-transfers", "1", "--grace-period", "1")
    src = make_file(tmp_path / "x.bin", 2 * MiB)
    try:
        with RawPeer(d.endpoint) as holder:
            holder.send_event(Put(1, "held.bin", 10 * MiB, MTIME_NS, 0o644, "blake3"))
            holder.expect(1, PutReady)
            async with Client(ClientConfig(d.endpoint, busy_retries=0)) as client:
                with pytest.raises(RemoteError) as info:
                    await client.put(src, "x.bin")
                assert info.value.code is ErrorCode.BUSY and "try again" in str(info.value)
            async with Client(
                ClientConfig(d.endpoint, busy_retries=10, busy_backoff=0.05, busy_backoff_max=0.5)
            ) as client:
                put = asyncio.create_task(client.put(src, "x.bin"))
                await asyncio.sleep(0.5)
                assert not put.done()  # still backing off
                holder.send_event(Cancel(1))
                done = await put
        assert done.digest == digest_of(src) == digest_of(d.root / "x.bin")
    finally:
        assert d.stop() == 0


class BusyRouter:
    """A ROUTER that answers every request with ERROR busy and counts the
    requests: the client's retries as the wire sees them."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.endpoint = f"tcp://127.0.0.1:{self.sock.bind_to_random_port('tcp://127.0.0.1')}"
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(50):
                continue
            identity, *frames = self.sock.recv_multipart()
            event = decode(frames)
            if isinstance(event, Put):
                self.requests += 1
                busy = Error(event.id, ErrorCode.BUSY.value, "1 transfers are running; try again shortly")
                self.sock.send_multipart([identity, *encode(busy)])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close(linger=0)
        self.ctx.term()


async def test_busy_retries_are_bounded(tmp_path):
    src = make_file(tmp_path / "x.bin", 2 * MiB)
    router = BusyRouter()
    try:
        config = ClientConfig(router.endpoint, timeout=5, busy_retries=3, busy_backoff=0.01, busy_backoff_max=0.02)
        async with Client(config) as client:
            with pytest.raises(RemoteError) as info:
                await client.put(src, "x.bin")
        assert info.value.code is ErrorCode.BUSY
        assert router.requests == 4  # the first attempt and three retries
    finally:
        router.close()


def test_free_space_checked_before_accepting(tmp_path, small_fs):
    if small_fs is None:
        pytest.skip("cannot mount a tmpfs here; the injected-error tests cover the write path")
    d = start_daemon(small_fs / "store", tmp_path / "daemon.log")
    try:
        with RawPeer(d.endpoint) as peer:
            peer.send_event(Put(1, "too-big.bin", 64 * MiB, MTIME_NS, 0o644, "blake3"))
            err = peer.expect_error(1, "no-space")
            assert "no space" in err.message and "more bytes" in err.message
        assert partials(d.root) == {}
    finally:
        assert d.stop() == 0


@pytest.mark.slow
async def test_disk_fills_mid_transfer_on_real_filesystem(tmp_path, small_fs):
    """16 MiB tmpfs: a committed file, then an upload accepted with room to
    spare, then the disk filled by someone else: that upload ends with
    no-space, the committed file stays, the daemon serves on."""
    if small_fs is None:
        pytest.skip("cannot mount a tmpfs here; the injected-error tests cover the write path")
    d = start_daemon(small_fs / "store", tmp_path / "daemon.log")
    kept = make_file(tmp_path / "kept.bin", MiB)
    data = os.urandom(8 * MiB)
    try:
        async with Client(d.endpoint) as client:
            await client.put(kept, "kept.bin")
        with RawPeer(d.endpoint) as peer:
            peer.send_event(Put(1, "big.bin", len(data), MTIME_NS, 0o644, "blake3"))
            ready = peer.expect(1, PutReady)
            credit = peer.send_range(1, data, 0, 2 * MiB, ready.credit)
            while max(partials(d.root).values(), default=0) < 2 * MiB:
                await asyncio.sleep(0.01)
            filler = small_fs / "filler"
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * MiB)
                        f.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
            peer.send_range(1, data, 2 * MiB, 2 * MiB + credit, credit)
            err = peer.expect_error(1, "no-space")
            assert "no space left" in err.message
        assert d.proc.poll() is None
        assert not (d.root / "big.bin").exists()
        async with Client(d.endpoint) as client:
            got = await client.get("kept.bin", tmp_path / "back" / "kept.bin")
            assert got.path.read_bytes() == kept.read_bytes() == (d.root / "kept.bin").read_bytes()
            assert [e.name async for e in client.list("")] == ["kept.bin"]
            filler.unlink()
            src = tmp_path / "big.bin"
            src.write_bytes(data)
            assert (await client.put(src, "big.bin")).digest == digest_of(src)
    finally:
        assert d.stop() == 0, d.log_text()


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG], ids=["ENOSPC", "EDQUOT", "EFBIG"])
async def test_write_error_mid_transfer_is_no_space(tmp_path, monkeypatch, err):
    """The write path failing with ENOSPC, EDQUOT or EFBIG (injected: a quota
    or a file size limit cannot be set up here) ends that upload with
    no-space; the committed file stays and the daemon serves on."""
    server = Server(ServerConfig(bind=f"tcp://127.0.0.1:{free_port()}", root=str(tmp_path / "store")))
    await server.startup()
    kept = make_file(tmp_path / "kept.bin", MiB)
    big = make_file(tmp_path / "big.bin", 6 * MiB)
    try:
        async with Client(server.endpoint) as client:
            await client.put(kept, "kept.bin")
            writes = 0
            real = DirectAppender.append

            def failing(appender, data, hasher) -> None:
                nonlocal writes
                writes += 1
                if writes == 3:
                    raise OSError(err, os.strerror(err))
                real(appender, data, hasher)

            monkeypatch.setattr(DirectAppender, "append", failing)
            with pytest.raises(RemoteError) as info:
                await client.put(big, "big.bin")
            assert info.value.code is ErrorCode.NO_SPACE
            monkeypatch.undo()
            assert not (Path(server.config.root) / "big.bin").exists()
            assert (Path(server.config.root) / "kept.bin").read_bytes() == kept.read_bytes()
            assert (await client.put(big, "big.bin")).digest == digest_of(big)
            assert sorted([e.name async for e in client.list("")]) == ["big.bin", "kept.bin"]
    finally:
        await server.shutdown()


def _fill(path: Path) -> None:
    """Fill the disk of ``path`` to the last byte (appending to it)."""
    with open(path, "ab") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def _inline_put(peer: RawPeer, tid: int, name: str, data: bytes) -> Event:
    peer.send_event(
        Put(tid, name, len(data), MTIME_NS, 0o644, "blake3", data=data, digest=blake3.blake3(data).digest())
    )
    return peer.expect(tid, PutOk | Error)  # type: ignore[arg-type]


@pytest.mark.slow
async def test_a_daemon_whose_catalog_cannot_be_written_starts_and_serves_reads(tmp_path, small_fs):
    """On a full disk the catalog cannot be written, nor even opened for
    writing: an upload is refused no-space without SQLite's wording; the
    daemon restarts, says so in one log line, serves downloads and listings,
    and takes uploads again once space is freed."""
    if small_fs is None:
        pytest.skip("cannot mount a tmpfs here")
    logs = tmp_path / "logs"
    d = restart(small_fs / "store", logs)
    kept = make_file(tmp_path / "kept.bin", MiB)
    filler = small_fs / "filler"
    try:
        async with Client(d.endpoint) as client:
            await client.put(kept, "kept.bin")
        _fill(filler)
        with RawPeer(d.endpoint) as peer:
            # An empty file needs no room for its bytes, only a catalog row.
            err = _inline_put(peer, 1, "empty.txt", b"")
            assert isinstance(err, Error) and err.code == "no-space", err
            assert "database" not in err.message and "disk I/O" not in err.message, err
        assert d.stop() == 0, d.log_text()
        _fill(filler)  # what the daemon freed as it stopped (its catalog's WAL)
        d = restart(small_fs / "store", logs)
        warned = [line for line in d.log_text().splitlines() if "read-only" in line]
        assert len(warned) == 1 and "disk is full" in warned[0], warned
        async with Client(d.endpoint) as client:
            assert [e.name async for e in client.list("")] == ["kept.bin"]
            got = await client.get("kept.bin", tmp_path / "back" / "kept.bin")
            assert got.path.read_bytes() == kept.read_bytes()
            # Removed with its row, or refused with its file kept: never a row without its file.
            [removal] = await client.remove(["kept.bin"])
            listed = [e.name async for e in client.list("")]
            if removal.error is None:
                assert listed == [] and not (d.root / "kept.bin").exists()
            else:
                assert removal.error.code is ErrorCode.NO_SPACE and "nothing was removed" in str(removal.error)
                assert listed == ["kept.bin"] and (d.root / "kept.bin").exists()
        with RawPeer(d.endpoint) as peer:
            for tid, data in enumerate((b"", b"small"), 1):
                err = _inline_put(peer, tid, f"new-{tid}.txt", data)
                assert isinstance(err, Error) and err.code == "no-space", err
                assert "database" not in err.message and "disk I/O" not in err.message, err
            peer.send_event(Put(3, "streamed.bin", MiB, MTIME_NS, 0o644, "blake3"))
            peer.expect_error(3, "no-space")
            filler.unlink()
            deadline = time.monotonic() + 30
            for tid in range(4, 1000):  # the daemon retries its catalog every few seconds
                answer = _inline_put(peer, tid, "after.txt", b"room again")
                if isinstance(answer, PutOk):
                    break
                assert time.monotonic() < deadline, answer
                await asyncio.sleep(0.5)
        assert (d.root / "after.txt").read_bytes() == b"room again"
    finally:
        filler.unlink(missing_ok=True)
        assert d.stop() == 0, d.log_text()


@pytest.mark.slow
def test_a_full_daemon_disk_stops_the_run_with_one_line(tmp_path, small_fs):
    if small_fs is None:
        pytest.skip("cannot mount a tmpfs here (root is needed)")
    d = start_daemon(small_fs / "store", tmp_path / "daemon.log")
    tree = tmp_path / "tree"
    for i in range(160):  # 48 MiB for a 16 MiB disk, in streamed files and small ones
        make_file(tree / f"big{i:03}.bin", 300 << 10)
    for i in range(300):
        make_file(tree / "small" / f"s{i:03}.bin", 4096)
    try:
        res = zfile_cli("send", str(tree), "--to", d.endpoint, check=False)
        assert res.returncode == 1, res.stderr
        errors = [line for line in res.stderr.splitlines() if line.startswith("zfile: error:")]
        assert len(errors) == 1, res.stderr  # one line, not one per file
        assert ("no space" in errors[0] or "disk is full" in errors[0]) and "stopped there" in errors[0]
        assert "database or disk is full" not in res.stderr
        summary = res.stdout.strip().splitlines()[-1]
        sent, failed = re.search(r"sent (\d+) file\(s\).*; (\d+) failed", summary).groups()
        assert int(sent) + int(failed) == 460 and 0 < int(sent) < 460, summary
        # The run stopped: the uploads refused at the daemon are those already
        # under way (at most the client's 32 at once), not every file not stored.
        refused = d.log_text().count("result=failed")
        assert refused <= 40 < int(failed), (refused, failed)
    finally:
        assert d.stop() == 0


def _fill_after_intents(monkeypatch, filler: Path) -> None:
    """From now on, the first batch whose commit intents are written fills
    the disk of ``filler`` to its last byte, before its files are installed."""
    real = Catalog.add_intents

    async def then_full(catalog, intents):
        batch = await real(catalog, intents)
        if not filler.exists():
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
            try:  # unbuffered: nothing is left to flush at the close
                for size in (1 << 20, 4096, 1):
                    with contextlib.suppress(OSError):
                        while os.write(fd, b"\0" * size):
                            pass
            finally:
                os.close(fd)
        return batch

    monkeypatch.setattr(Catalog, "add_intents", then_full)


async def _put_when_room(client: Client, src: Path, name: str) -> None:
    """Upload ``src`` as ``name`` once the store takes uploads again (it
    tries its catalog again every few seconds)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await client.put(src, name)
            return
        except RemoteError as exc:
            assert exc.code is ErrorCode.NO_SPACE and time.monotonic() < deadline, exc
            await asyncio.sleep(0.5)


async def _stored_tree(root: Path, client: Client) -> tuple[list[str], list[str]]:
    """The names the daemon lists, and the files its root holds, sorted."""
    listed = sorted([e.name async for e in client.list("")])
    return listed, sorted(p.name for p in root.iterdir() if p.is_file())


@pytest.mark.slow
async def test_a_disk_that_fills_between_a_batchs_install_and_its_rows_still_records_them(
    tmp_path, small_fs, monkeypatch, caplog
):
    """The disk fills to its last byte after a PUT-MANY's commit intents are
    written: the files are installed, the catalog frees its reserve to
    record them (a new file and a replaced one), so what it lists is what
    the disk holds and a get of the replaced file gives its new bytes; then
    it refuses uploads until there is room for the reserve again."""
    if small_fs is None:
        pytest.skip("cannot mount a tmpfs here (root is needed)")
    root = small_fs / "store"
    server = Server(ServerConfig(bind=f"tcp://127.0.0.1:{free_port()}", root=str(root)))
    await server.startup()
    reserve = root / ".zfile" / "catalog.reserve"
    filler = small_fs / "filler"
    old = make_file(tmp_path / "old" / "a.bin", 4096)
    files = [make_file(tmp_path / "new" / f"f{i}.bin", 4096) for i in range(20)] + [
        make_file(tmp_path / "new" / "a.bin", 4096)
    ]
    try:
        assert reserve.stat().st_blocks * 512 >= 256 << 10
        async with Client(server.endpoint) as client:
            await client.put(old, "a.bin")
            _fill_after_intents(monkeypatch, filler)
            results = await client.put_many([(f, f.name) for f in files])
            monkeypatch.undo()
            assert all(isinstance(r, Result) for r in results), results
            assert [r.message for r in caplog.records if "freed its reserve" in r.message] != []
            assert not reserve.exists()
            listed, on_disk = await _stored_tree(root, client)
            assert listed == on_disk == sorted(f.name for f in files)
            got = await client.get("a.bin", tmp_path / "back" / "a.bin")
            assert got.path.read_bytes() == files[-1].read_bytes() != old.read_bytes()
            with pytest.raises(RemoteError) as info:
                await client.put(old, "later.bin")
            assert info.value.code is ErrorCode.NO_SPACE
            # A removal is what frees room: it is not refused, and its row goes with its file.
            [removal] = await client.remove(["f0.bin"])
            assert removal.error is None, removal
            listed, on_disk = await _stored_tree(root, client)
            assert listed == on_disk == sorted(f.name for f in files[1:])
            filler.unlink()
            await _put_when_room(client, old, "later.bin")
            assert reserve.stat().st_blocks * 512 >= 256 << 10
    finally:
        filler.unlink(missing_ok=True)
        await server.shutdown()


@pytest.mark.slow
async def test_rows_the_reserve_could_not_save_are_recorded_once_there_is_room(tmp_path, small_fs, monkeypatch):
    """Without a reserve to free, the rows of a batch installed as the disk
    filled cannot be written: its files are refused no-space, and recorded
    from their commit intents as soon as the catalog is writable again, not
    at the next start."""
    if small_fs is None:
        pytest.skip("cannot mount a tmpfs here (root is needed)")
    root = small_fs / "store"
    server = Server(ServerConfig(bind=f"tcp://127.0.0.1:{free_port()}", root=str(root)))
    await server.startup()
    filler = small_fs / "filler"
    old = make_file(tmp_path / "old" / "a.bin", 4096)
    files = [make_file(tmp_path / "new" / f"f{i}.bin", 4096) for i in range(5)] + [
        make_file(tmp_path / "new" / "a.bin", 4096)
    ]
    try:
        async with Client(server.endpoint) as client:
            await client.put(old, "a.bin")
            monkeypatch.setattr(Reserve, "release", lambda self: False)  # as if spent already
            _fill_after_intents(monkeypatch, filler)
            results = await client.put_many([(f, f.name) for f in files])
            monkeypatch.undo()
            assert all(isinstance(r, RemoteError) and r.code is ErrorCode.NO_SPACE for r in results), results
            filler.unlink()
            await _put_when_room(client, old, "later.bin")
            listed, on_disk = await _stored_tree(root, client)
            assert listed == on_disk == sorted([f.name for f in files] + ["later.bin"])
            got = await client.get("a.bin", tmp_path / "back" / "a.bin")
            assert got.path.read_bytes() == files[-1].read_bytes()
    finally:
        filler.unlink(missing_ok=True)
        await server.shutdown()
