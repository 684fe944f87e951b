"""The large-file data path: ChunkReader (reads and hashes in order, from the
page cache in the event loop or from the disk in a worker-thread hop),
BufferPool (a buffer is reused only once its sends are done), the credit
step, and end to end a file that changes while it is sent, chunks
cut by credit, small windows."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from pathlib import Path

import blake3
import pytest

from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.errors import LocalFileError
from zfile.fileio import chunks as chunkio
from zfile.fileio.chunks import BufferPool, ChunkReader, ShortRead
from zfile.server.config import ServerConfig
from zfile.server.server import Server

from ..conftest import free_port
from ..rawpeer import MiB, digest_of, make_file


class Tracker:
    def __init__(self, done: bool = False) -> None:
        self.done = done


class RecordingHasher:
    """A BLAKE3 hasher that also records each update's bytes, in order."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self._h = blake3.blake3()

    def update(self, data) -> None:
        self.parts.append(bytes(data))
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()


async def read_all(reader: ChunkReader, give_back: bool = True) -> list[bytes]:
    chunks = []
    try:
        while not reader.done:
            buf, view = await reader.next()
            chunks.append(bytes(view))
            if give_back:
                reader.pool.give(buf)
    finally:
        await reader.aclose()
    return chunks


@pytest.fixture(params=["cached", "hop", "buffered-hop", "mixed"])
def read_path(request, monkeypatch) -> str:
    """Which way ChunkReader gets its bytes: all from the page cache in the
    loop, all in worker-thread hops (O_DIRECT where aligned, or always
    buffered), or a random part of each chunk from the cache and the rest in
    a hop."""
    if request.param in ("hop", "buffered-hop"):
        monkeypatch.setattr(chunkio, "_RWF_NOWAIT", None)
    if request.param == "buffered-hop":
        monkeypatch.setattr(chunkio, "_O_DIRECT", 0)
    elif request.param == "mixed":
        rng = random.Random(7)

        def partly_cached(self, view, offset):
            n = rng.randrange(0, len(view) + 1)
            return os.preadv(self.fd, [view[:n]], offset) if n else 0

        monkeypatch.setattr(ChunkReader, "_read_cached", partly_cached)
    return request.param


@pytest.mark.parametrize(("size", "start"), [(10 * 4096 + 17, 0), (10 * 4096 + 17, 5000), (4096, 0)])
async def test_reader_yields_every_byte_in_order_and_hashes_it(tmp_path: Path, read_path, size, start) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    hasher = RecordingHasher()
    chunks = await read_all(ChunkReader(fd, start, size, 4096, hasher, owns_fd=True))
    assert b"".join(chunks) == data[start:]
    assert all(len(c) == 4096 for c in chunks[:-1]) and 0 < len(chunks[-1]) <= 4096
    # The hasher saw the same chunks, in the same (file) order.
    assert hasher.parts == chunks
    assert hasher.digest() == blake3.blake3(data[start:]).digest()
    with pytest.raises(OSError):
        os.fstat(fd)  # owned: closed by aclose


async def test_a_cached_chunk_takes_no_hop_and_an_uncached_one_does(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(chunkio, "_O_DIRECT", 0)  # the hop's buffered read shows here
    data = os.urandom(3 * 4096)
    (tmp_path / "f").write_bytes(data)
    hops = []
    real = chunkio.read_exactly

    def counting(fd, view, offset):
        hops.append(offset)
        real(fd, view, offset)

    monkeypatch.setattr(chunkio, "read_exactly", counting)
    calls = 0

    def second_not_cached(self, view, offset):
        nonlocal calls
        calls += 1
        return 0 if calls == 2 else os.preadv(self.fd, [view], offset)

    monkeypatch.setattr(ChunkReader, "_read_cached", second_not_cached)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    assert b"".join(await read_all(ChunkReader(fd, 0, len(data), 4096, owns_fd=True))) == data
    assert hops == [4096]


async def test_the_page_cache_path_really_is_taken(tmp_path: Path, monkeypatch) -> None:
    """On this machine's kernel a file just written is read without a hop."""
    if chunkio._RWF_NOWAIT is None:
        pytest.skip("no RWF_NOWAIT here")
    data = os.urandom(8 * 4096)
    (tmp_path / "f").write_bytes(data)
    monkeypatch.setattr(chunkio, "read_exactly", lambda *a: pytest.fail("hopped for a cached chunk"))
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    assert b"".join(await read_all(ChunkReader(fd, 0, len(data), 4096, owns_fd=True))) == data


async def test_an_uncached_aligned_chunk_is_read_direct_into_its_buffer(tmp_path: Path, monkeypatch) -> None:
    """No buffered read at all for a file the page cache does not hold:
    every chunk, the short last one too, comes by O_DIRECT, and whole."""
    if not chunkio._O_DIRECT:
        pytest.skip("no O_DIRECT here")
    data = os.urandom(5 * 4096 + 123)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    try:
        os.close(os.open(tmp_path / "f", os.O_RDONLY | chunkio._O_DIRECT))
    except OSError:
        pytest.skip("this file system refuses O_DIRECT")
    monkeypatch.setattr(chunkio, "_RWF_NOWAIT", None)
    monkeypatch.setattr(chunkio, "read_exactly", lambda *a: pytest.fail("a buffered read for an aligned chunk"))
    hasher = RecordingHasher()
    reader = ChunkReader(fd, 0, len(data), 4096, hasher, owns_fd=True)
    assert reader.pool.aligned
    assert b"".join(await read_all(reader)) == data
    assert hasher.digest() == blake3.blake3(data).digest()


def cold_file(path: Path, size: int) -> tuple[bytes, int]:
    """A file of ``size`` random bytes the page cache does not hold, open
    read-only; skips where O_DIRECT cannot be had.

    Its readers in these tests turn the page-cache probe (RWF_NOWAIT) off:
    a probe of a page not cached starts the kernel's read-ahead and returns
    the page if that read is done by the time the kernel looks again (3 in
    500 probes of a one-page chunk here, more under load); the reader then
    stays on the page cache, correctly, but a test of direct reads would
    see none."""
    if not chunkio._O_DIRECT:
        pytest.skip("no O_DIRECT here")
    data = os.urandom(size)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    try:
        os.close(os.open(path, os.O_RDONLY | chunkio._O_DIRECT))
    except OSError:
        os.close(fd)
        pytest.skip("this file system refuses O_DIRECT")
    return data, fd


@pytest.mark.parametrize("ahead", [1, 2, 3, 8])
@pytest.mark.parametrize("start", [0, 3 * 4096, 100])
async def test_without_a_hasher_direct_reads_run_ahead_each_chunk_once(tmp_path: Path, monkeypatch, ahead, start):
    """Once chunks come from the disk by direct reads, a reader without a
    hasher keeps READ_AHEAD more under way; every chunk is still read once
    and handed out in order, to the file's last byte."""
    data, fd = cold_file(tmp_path / "f", 9 * 4096 + 77)
    monkeypatch.setattr(chunkio, "_RWF_NOWAIT", None)  # see cold_file
    monkeypatch.setattr(chunkio, "READ_AHEAD", ahead)
    reads: list[int] = []
    real = ChunkReader._read_rest

    def counted(self, whole, n, got, offset):
        reads.append(offset + got)
        real(self, whole, n, got, offset)

    monkeypatch.setattr(ChunkReader, "_read_rest", counted)
    reader = ChunkReader(fd, start, len(data), 4096, owns_fd=True)
    most = 0
    chunks = []
    try:
        while not reader.done:
            buf, view = await reader.next()
            most = max(most, len(reader._ahead))
            chunks.append(bytes(view))
            reader.pool.give(buf)
    finally:
        await reader.aclose()
    assert b"".join(chunks) == data[start:]
    assert sorted(reads) == sorted(set(reads))  # no chunk read twice
    # Unaligned chunks are buffered reads, which the kernel reads ahead itself.
    assert most == (min(ahead, len(chunks) - 1) if start % 4096 == 0 else 0)
    with pytest.raises(OSError):
        os.fstat(fd)


async def test_a_reader_with_a_hasher_reads_one_chunk_at_a_time(tmp_path: Path) -> None:
    data, fd = cold_file(tmp_path / "f", 6 * 4096)
    hasher = RecordingHasher()
    reader = ChunkReader(fd, 0, len(data), 4096, hasher, owns_fd=True)
    try:
        while not reader.done:
            buf, _ = await reader.next()
            assert not reader._ahead
            reader.pool.give(buf)
    finally:
        await reader.aclose()
    assert hasher.parts == [data[k : k + 4096] for k in range(0, len(data), 4096)]


async def test_aclose_waits_for_every_read_ahead_before_closing(tmp_path: Path, monkeypatch) -> None:
    data, fd = cold_file(tmp_path / "f", 8 * 4096)
    monkeypatch.setattr(chunkio, "_RWF_NOWAIT", None)  # see cold_file
    monkeypatch.setattr(chunkio, "READ_AHEAD", 3)
    release = threading.Event()
    real = ChunkReader._read_rest
    open_during: list[bool] = []

    def slow(self, whole, n, got, offset):
        if offset:  # the first read goes through; those ahead wait
            release.wait(5)
            try:
                os.fstat(self.fd)
                open_during.append(True)
            except OSError:
                open_during.append(False)
        real(self, whole, n, got, offset)

    monkeypatch.setattr(ChunkReader, "_read_rest", slow)
    reader = ChunkReader(fd, 0, len(data), 4096, owns_fd=True)
    buf, view = await reader.next()
    assert bytes(view) == data[:4096] and len(reader._ahead) == 3
    closing = asyncio.create_task(reader.aclose())
    await asyncio.sleep(0.05)
    assert not closing.done()
    os.fstat(fd)
    release.set()
    await closing
    assert open_during == [True, True, True]
    with pytest.raises(OSError):
        os.fstat(fd)


async def test_a_pool_that_is_not_aligned_reads_buffered(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(chunkio, "_RWF_NOWAIT", None)
    data = os.urandom(3 * 4096)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    reader = ChunkReader(fd, 0, len(data), 4096, pool=BufferPool(4096), owns_fd=True)
    assert b"".join(await read_all(reader)) == data


async def test_a_file_shorter_than_expected_raises_short_read(tmp_path: Path, read_path) -> None:
    (tmp_path / "f").write_bytes(os.urandom(10_000))
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    reader = ChunkReader(fd, 0, 20_000, 4096, owns_fd=True)
    with pytest.raises(ShortRead):
        await read_all(reader)


async def test_aclose_closes_the_descriptor_only_after_the_hop_in_flight(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(chunkio, "_RWF_NOWAIT", None)
    monkeypatch.setattr(chunkio, "_O_DIRECT", 0)
    (tmp_path / "f").write_bytes(os.urandom(8192))
    release = threading.Event()
    reading = threading.Event()
    seen_fd_open = []
    real = chunkio.read_exactly

    def blocked_read(fd, view, offset):
        reading.set()
        release.wait(5)
        try:
            os.fstat(fd)
            seen_fd_open.append(True)
        except OSError:
            seen_fd_open.append(False)
        real(fd, view, offset)

    monkeypatch.setattr(chunkio, "read_exactly", blocked_read)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    reader = ChunkReader(fd, 0, 8192, 4096, owns_fd=True)
    task = asyncio.create_task(reader.next())
    await asyncio.to_thread(reading.wait, 5)
    task.cancel()  # a cancelled caller must not orphan the hop
    with pytest.raises(asyncio.CancelledError):
        await task
    closing = asyncio.create_task(reader.aclose())
    await asyncio.sleep(0.05)
    assert not closing.done()
    os.fstat(fd)  # still open while the hop reads
    release.set()
    await closing
    assert seen_fd_open == [True]
    with pytest.raises(OSError):
        os.fstat(fd)


def test_pool_reuses_a_buffer_only_once_its_sends_are_done() -> None:
    pool = BufferPool(16, keep=4)
    a = pool.take()
    pending = Tracker(False)
    pool.give(a, [Tracker(True), pending])
    b = pool.take()
    assert b is not a  # a is still held by a send
    pending.done = True
    pool.give(b, [None])
    assert pool.take() in (a, b) and pool.take() in (a, b)


def test_pool_keeps_at_most_keep_buffers() -> None:
    pool = BufferPool(16, keep=2)
    bufs = [pool.take() for _ in range(5)]
    for buf in bufs:
        pool.give(buf)
    kept = {id(pool.take()) for _ in range(2)}
    assert kept <= {id(b) for b in bufs}
    assert id(pool.take()) not in {id(b) for b in bufs}  # the rest were let go


# -- end to end ---------------------------------------------------------------------


@pytest.fixture
async def server(tmp_path: Path):
    srv = Server(ServerConfig(bind=f"tcp://127.0.0.1:{free_port()}", root=str(tmp_path / "store")))
    await srv.startup()
    try:
        yield srv
    finally:
        await srv.shutdown()


@pytest.mark.parametrize("change", ["shrink", "grow"])
async def test_a_file_that_changes_size_while_sent_fails(server: Server, tmp_path: Path, read_path, change) -> None:
    src = make_file(tmp_path / "src.bin", 12 * MiB)
    size = src.stat().st_size

    def progress(n: int) -> None:
        if src.stat().st_size == size:  # once, after the first chunk went
            if change == "shrink":
                os.truncate(src, 3 * MiB)
            else:
                with open(src, "ab") as f:
                    f.write(b"more")

    async with Client(server.endpoint) as client:
        with pytest.raises(LocalFileError, match="changed while being sent"):
            await client.put(src, "src.bin", progress=progress)
        names = [e.name async for e in client.list("")]
    assert names == []  # nothing was published


@pytest.mark.slow
async def test_chunks_larger_than_the_credit_go_in_pieces(server: Server, tmp_path: Path, read_path) -> None:
    """A client chunk of 3 MiB against credit granted 2 MiB at a time; a
    download into a window smaller than the daemon's chunk."""
    src = make_file(tmp_path / "src.bin", 21 * MiB + 123)
    async with Client(ClientConfig(server.endpoint, chunk_size=3 * MiB)) as client:
        result = await client.put(src, "src.bin")
    assert result.digest == digest_of(src)
    async with Client(ClientConfig(server.endpoint, window=384 << 10)) as client:
        got = await client.get("src.bin", tmp_path / "out" / "src.bin")
    assert got.digest == digest_of(src)
    assert (tmp_path / "out" / "src.bin").read_bytes() == src.read_bytes()
