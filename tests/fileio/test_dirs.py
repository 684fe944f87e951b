"""A download's parent directories: made as ``mkdir -p``, and what is in the way named."""

from __future__ import annotations

import os

import pytest

from zfile.fileio.dirs import make_parents


def test_the_missing_parents_are_made_and_existing_ones_kept(tmp_path):
    make_parents(tmp_path / "a" / "b" / "f")
    assert (tmp_path / "a" / "b").is_dir()
    make_parents(tmp_path / "a" / "b" / "g")
    os.symlink(tmp_path / "a", tmp_path / "link")
    make_parents(tmp_path / "link" / "c" / "f")  # a symbolic link to a directory is followed, as mkdir -p does
    assert (tmp_path / "a" / "c").is_dir()


@pytest.mark.parametrize("depth", [1, 2])
def test_a_file_in_the_way_is_named(tmp_path, depth):
    (tmp_path / "t").write_text("x")
    dest = tmp_path.joinpath("t", *["sub"] * (depth - 1), "f")
    with pytest.raises(NotADirectoryError) as caught:
        make_parents(dest)
    assert caught.value.strerror == f"{tmp_path / 't'} is not a directory"
    assert caught.value.filename == str(dest)
    assert (tmp_path / "t").read_text() == "x"


def test_a_dangling_symbolic_link_in_the_way_is_named(tmp_path):
    os.symlink(tmp_path / "nowhere", tmp_path / "d")
    with pytest.raises(NotADirectoryError, match="d is not a directory"):
        make_parents(tmp_path / "d" / "x" / "f")
    assert not (tmp_path / "nowhere").exists()
