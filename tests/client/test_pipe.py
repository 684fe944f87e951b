"""Tests of zfile.client.pipe: reading a real pipe ahead in whole chunks
(the end-to-end `send -` is in tests/cli/test_ops.py)."""

from __future__ import annotations

import fcntl
import io
import os
import threading

import blake3
import pytest

from zfile.client.pipe import PipeReader, fill, widen_pipe

CHUNK = 64 * 1024


def feed(data: bytes, pieces: list[int]) -> io.BufferedReader:
    """A pipe whose writer, a thread, writes ``data`` in pieces of the given
    sizes in turn and then closes it; its read end as the file object
    ``sys.stdin.buffer`` would be."""
    r, w = os.pipe()

    def write() -> None:
        at, k = 0, 0
        while at < len(data):
            n = pieces[k % len(pieces)]
            os.write(w, data[at : at + n])
            at += n
            k += 1
        os.close(w)

    threading.Thread(target=write, daemon=True).start()
    return os.fdopen(r, "rb")


async def read_all(reader: PipeReader) -> list[bytes]:
    chunks = []
    while True:
        buf, view = await reader.next()
        chunks.append(bytes(view))
        reader.pool.give(buf)
        if not view:
            return chunks


@pytest.mark.parametrize("size", [0, 1, CHUNK, 3 * CHUNK + 5])
async def test_a_pipe_is_read_in_whole_chunks_hashed_in_order(size):
    data = os.urandom(size)
    hasher = blake3.blake3()
    with feed(data, [1000, 7, 65536, 4097]) as source:
        reader = PipeReader(source, CHUNK, hasher)
        try:
            chunks = await read_all(reader)
        finally:
            reader.close()
    assert b"".join(chunks) == data
    assert chunks[-1] == b""
    # Every chunk but the last is whole, however the writer cut its writes.
    assert [len(c) for c in chunks[:-1]] == [CHUNK] * (size // CHUNK) + ([size % CHUNK] if size % CHUNK else [])
    assert hasher.digest() == blake3.blake3(data).digest()


async def test_buffers_are_reused_once_given_back():
    data = os.urandom(8 * CHUNK)
    with feed(data, [CHUNK]) as source:
        reader = PipeReader(source, CHUNK, blake3.blake3())
        try:
            seen = set()
            for _ in range(8):
                buf, view = await reader.next()
                seen.add(id(buf))
                reader.pool.give(buf)
        finally:
            reader.close()
    assert len(seen) <= 3  # the one sent, the one read ahead, and one more at most


async def test_a_read_error_is_raised_by_next():
    r, w = os.pipe()
    source = os.fdopen(w, "rb")  # a pipe's write end: read(2) fails with EBADF
    reader = PipeReader(source, CHUNK, blake3.blake3())
    try:
        with pytest.raises(OSError):
            await reader.next()
    finally:
        reader.close()
        source.close()
        os.close(r)


def test_fill_reads_a_file_object_without_readinto():
    class Reads:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self, n: int) -> bytes:
            out, self.data = self.data[: min(n, 3)], self.data[min(n, 3) :]
            return out

    view = memoryview(bytearray(10))
    hasher = blake3.blake3()
    assert fill(Reads(b"abcdefgh"), view, hasher) == 8  # type: ignore[arg-type]
    assert bytes(view[:8]) == b"abcdefgh" and hasher.digest() == blake3.blake3(b"abcdefgh").digest()


def test_a_pipe_is_widened_to_a_chunk_and_a_file_is_left_alone(tmp_path):
    r, w = os.pipe()
    try:
        with os.fdopen(r, "rb", closefd=False) as source:
            widen_pipe(source, 1 << 20)
        with open("/proc/sys/fs/pipe-max-size") as limit:
            assert fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) >= min(1 << 20, int(limit.read()))
    finally:
        os.close(r)
        os.close(w)
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with path.open("rb") as f:
        widen_pipe(f, 1 << 20)  # no error: not a pipe
