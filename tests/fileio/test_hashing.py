"""Hashing what a file holds on disk: a prefix (resume) and a whole file of a
known size (the quick check's -c)."""

from __future__ import annotations

import os
import threading
import time

import blake3
import pytest

from zfile.fileio.hashing import hash_file_prefix, whole_file_digest


@pytest.mark.parametrize("size", [0, 1, 4096, (1 << 20) + 3])
def test_a_file_of_the_size_given_gives_its_digest(tmp_path, size):
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert whole_file_digest(tmp_path / "f", size) == blake3.blake3(data).digest()
    assert whole_file_digest(str(tmp_path / "f"), size, block=4096) == blake3.blake3(data).digest()


@pytest.mark.parametrize("said", [4095, 4097, 0])
@pytest.mark.parametrize("block", [1000, 1 << 20])
def test_a_file_shorter_or_longer_than_said_gives_none(tmp_path, said, block):
    (tmp_path / "f").write_bytes(os.urandom(4096))
    assert whole_file_digest(tmp_path / "f", said, block=block) is None


def test_a_read_cut_short_reads_on_to_the_size(tmp_path):
    # A FIFO hands over what its writer has written so far: the first read(2) is short.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    halves = os.urandom(100), os.urandom(100)

    def writer() -> None:
        with open(fifo, "wb", buffering=0) as f:
            f.write(halves[0])
            time.sleep(0.2)
            f.write(halves[1])

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert whole_file_digest(fifo, 200) == blake3.blake3(b"".join(halves)).digest()
    finally:
        t.join()


def test_a_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        whole_file_digest(tmp_path / "gone", 1)


def test_a_prefix_hashes_the_first_bytes_and_a_short_file_raises_eoferror(tmp_path):
    data = os.urandom(10_000)
    (tmp_path / "f").write_bytes(data)
    assert hash_file_prefix(str(tmp_path / "f"), 5000, block=999).digest() == blake3.blake3(data[:5000]).digest()
    with pytest.raises(EOFError):
        hash_file_prefix(str(tmp_path / "f"), 10_001)
