"""LocalStore.delete: the file and its catalog row go, atomically for readers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zfile.errors import BadName, NotFound
from zfile.store import LocalStore

from .test_local import upload


async def test_delete_removes_file_and_row(store: LocalStore) -> None:
    entry = await upload(store, "d/a.bin", b"abc")
    assert await store.delete("d/a.bin") == entry
    assert not (store.root / "d" / "a.bin").exists()
    assert await store.list() == []
    with pytest.raises(NotFound):
        await store.lookup("d/a.bin")
    with pytest.raises(NotFound):
        await store.open_download("d/a.bin")
    with pytest.raises(NotFound):
        await store.delete("d/a.bin")


async def test_a_download_opened_before_reads_the_whole_old_file(store: LocalStore) -> None:
    data = os.urandom(300_000)
    await upload(store, "big.bin", data)
    download = await store.open_download("big.bin")
    try:
        await store.delete("big.bin")
        assert await download.read(0, len(data) + 1) == data
    finally:
        await download.close()
    await upload(store, "big.bin", b"again", clobber=False)  # the name is free again
    assert (await store.lookup("big.bin")).size == 5


async def test_a_row_whose_file_is_gone_is_dropped(store: LocalStore) -> None:
    await upload(store, "gone.txt", b"x")
    (store.root / "gone.txt").unlink()
    await store.delete("gone.txt")
    assert await store.list() == []


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", ".zfile/catalog.db", "a\x00b", ""])
async def test_delete_refuses_bad_names(store: LocalStore, name: str) -> None:
    with pytest.raises(BadName):
        await store.delete(name)


async def test_delete_refuses_a_path_through_a_symlink_out_of_the_root(store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    await upload(store, "link/keep.txt", b"inside")
    (store.root / "link" / "keep.txt").unlink()
    (store.root / "link").rmdir()
    (store.root / "link").symlink_to(outside)
    with pytest.raises(BadName):
        await store.delete("link/keep.txt")
    assert (outside / "keep.txt").read_text() == "keep"
