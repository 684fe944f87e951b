"""Tests of zfile.fileio.direct: O_DIRECT appends of received bytes, on real files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import blake3
import pytest

from zfile.fileio import direct
from zfile.fileio.direct import ALIGN, STAGE, DirectAppender
from zfile.fileio.writeback import Writeback

MiB = 1 << 20


def appender(path: Path, start: bytes = b"") -> tuple[int, DirectAppender]:
    path.write_bytes(start)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    return fd, DirectAppender(fd, len(start), Writeback(len(start)))


def cached_bytes(path: Path) -> int:
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)], capture_output=True)
    return int(out.stdout.split()[0])


@pytest.mark.parametrize("start", [0, 5000])  # a fresh file, and a resumed partial off a page boundary
def test_pieces_of_any_length_make_the_file_and_its_digest(tmp_path: Path, start: int) -> None:
    head = os.urandom(start)
    fd, app = appender(tmp_path / "f", head)
    pieces = [os.urandom(n) for n in (1, 4095, MiB, 3 * ALIGN + 7, STAGE + 12345, 2 * MiB + 1, 10)]
    hasher = blake3.blake3()
    try:
        for piece in pieces:
            app.append(piece, hasher)
            on_disk = (tmp_path / "f").read_bytes()
            # The file is a prefix of what was appended; less than a page waits for the next write.
            assert (head + b"".join(pieces)).startswith(on_disk)
            assert app.end - len(on_disk) < ALIGN
        assert app.direct
        app.flush()
        os.fsync(fd)
    finally:
        app.close()
        os.close(fd)
    body = b"".join(pieces)
    assert (tmp_path / "f").read_bytes() == head + body
    assert app.end == start + len(body)
    assert hasher.digest() == blake3.blake3(body).digest()


def test_direct_writes_leave_the_page_cache_alone(tmp_path: Path) -> None:
    if shutil.which("fincore") is None:
        pytest.skip("fincore (util-linux-extra) is not installed")
    fd, app = appender(tmp_path / "f")
    try:
        for _ in range(16):
            app.append(os.urandom(MiB), blake3.blake3())
        assert app.direct
        app.flush()
        os.fsync(fd)
    finally:
        app.close()
        os.close(fd)
    assert (tmp_path / "f").stat().st_size == 16 * MiB
    assert cached_bytes(tmp_path / "f") < MiB  # buffered writes would leave all 16 MiB cached


def test_without_o_direct_it_writes_through_the_page_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "_O_DIRECT", 0)
    fd, app = appender(tmp_path / "f")
    data = os.urandom(MiB + 3)
    try:
        app.append(data, blake3.blake3())
        assert not app.direct
        assert (tmp_path / "f").read_bytes() == data  # nothing held back: no tail without direct writes
    finally:
        app.close()
        os.close(fd)


def test_close_drops_the_unflushed_tail_and_the_file_stays_a_prefix(tmp_path: Path) -> None:
    fd, app = appender(tmp_path / "f")
    data = os.urandom(3 * ALIGN + 100)
    try:
        app.append(data, blake3.blake3())
    finally:
        app.close()
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data[: 3 * ALIGN]  # as a kill -9 would leave it: a resume asks again


def test_a_full_disk_raises_and_leaves_a_prefix(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    fd = os.open("/dev/full", os.O_WRONLY)
    app = DirectAppender(fd, 0, Writeback())
    try:
        with pytest.raises(OSError) as info:
            app.append(os.urandom(10), blake3.blake3())
            app.flush()
        assert info.value.errno == 28  # ENOSPC
    finally:
        app.close()
        os.close(fd)
