"""ChunkWriter: a file's chunks written, hashed and fsynced by its own thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zfile.fileio.writeback import Writeback
from zfile.fileio.writer import ChunkWriter
from zfile.protocol.digest import new_hasher


async def test_chunks_fed_are_written_in_order_hashed_and_fsynced(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"head")
    parts = [os.urandom(n) for n in (1, 4096, 70_000, 0, 3)]
    fd = os.open(path, os.O_WRONLY)
    try:
        hasher = new_hasher()
        hasher.update(b"head")
        writer = ChunkWriter(fd, 4, hasher, Writeback(4, step=4096))
        for p in parts:
            writer.feed(memoryview(p))
        await writer.reach(4 + 4097)
        assert writer.written >= 4 + 4097
        await writer.finish()
        assert writer.done.done()
        assert writer.written == 4 + sum(map(len, parts))
    finally:
        os.close(fd)
    want = b"head" + b"".join(parts)
    assert path.read_bytes() == want
    expect = new_hasher()
    expect.update(want)
    assert hasher.digest() == expect.digest()


async def test_a_failed_write_is_raised_by_reach_and_finish(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)  # every write fails with EBADF
    try:
        writer = ChunkWriter(fd, 0, new_hasher(), Writeback(0))
        writer.feed(b"x" * 10)
        with pytest.raises(OSError):
            await writer.reach(10)
        with pytest.raises(OSError):
            writer.feed(b"y")
        with pytest.raises(OSError):
            await writer.finish()
    finally:
        os.close(fd)
    assert path.read_bytes() == b""


async def test_abort_drops_what_is_queued_and_frees_the_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        writer = ChunkWriter(fd, 0, new_hasher(), Writeback(0))
        writer.abort()
        await writer.done
        writer.feed(b"late")  # the thread is gone: queued, never written
        await writer.reach(4)  # returns rather than waiting for a thread that stopped
        assert writer.written == 0
    finally:
        os.close(fd)
    assert path.read_bytes() == b""
