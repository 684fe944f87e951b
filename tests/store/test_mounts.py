"""A file system mounted inside the store's root: a file is committed by a
rename (or link) from the partials directory, which cannot cross file
systems, so every way of storing a file there is refused by name before a
byte is written, and the rest of the store goes on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from zfile.errors import BadName, StoreError
from zfile.protocol.events import Entry, PutFile
from zfile.store import LocalStore, unnamed

from ..conftest import tmpfs_at
from .test_local import MTIME_NS, b3, begin, tmp_files, upload


@pytest.fixture
def mounted(store: LocalStore) -> Iterator[Path]:
    """A tmpfs mounted at ``<root>/mnt`` for this test."""
    with tmpfs_at(store.root / "mnt") as mnt:
        yield mnt


def whole(name: str, data: bytes) -> PutFile:
    return PutFile(name, len(data), MTIME_NS, 0o640, b3(data), True, data)


def mounted_files(mnt: Path) -> list[str]:
    return sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*"))


async def test_a_streamed_upload_into_a_mount_is_refused_at_its_begin(store: LocalStore, mounted: Path) -> None:
    with pytest.raises(BadName, match="another file system") as info:
        await begin(store, "mnt/deep/big.bin", 1 << 20)
    assert "'mnt/deep/big.bin'" in str(info.value) and "store of its own" in str(info.value)
    assert mounted_files(mounted) == [] and tmp_files(store) == []
    # The store beside the mount goes on.
    assert (await upload(store, "beside.bin", b"x" * 5000)).size == 5000


@pytest.mark.parametrize("budget", [None, 0], ids=["unnamed", "named partials"])
async def test_a_batch_refuses_the_files_into_a_mount_alone(
    store: LocalStore, mounted: Path, monkeypatch, budget: int | None
) -> None:
    if budget is not None:
        monkeypatch.setattr(unnamed, "DESCRIPTORS", unnamed.Budget(budget))
    files = [whole("mnt/a", b"a"), whole("ok/b", b"b"), whole("mnt/new/c", b"c"), whole("d", b"d")]
    results = await store.put_many(files, algo="blake3", peer="")
    assert [type(r) for r in results] == [BadName, Entry, BadName, Entry]
    assert "another file system" in str(results[0]) and "'mnt/new/c'" in str(results[2])
    assert mounted_files(mounted) == [] and tmp_files(store) == []
    assert (store.root / "ok" / "b").read_bytes() == b"b" and (store.root / "d").read_bytes() == b"d"
    assert [e.name for e in await store.list()] == ["d", "ok/b"]


async def test_a_file_moved_into_a_mount_stays_where_it_was(store: LocalStore, mounted: Path) -> None:
    await upload(store, "a.bin", b"abc")
    with pytest.raises(BadName, match="another file system"):
        await store.rename("a.bin", "mnt/a.bin")
    assert (store.root / "a.bin").read_bytes() == b"abc" and mounted_files(mounted) == []
    assert [e.name for e in await store.list()] == ["a.bin"]


async def test_a_directory_beside_the_mount_is_still_writable(store: LocalStore, mounted: Path) -> None:
    # "mnt2" starts with the mount's name but is the root's own directory.
    assert (await upload(store, "mnt2/x", b"x")).size == 1
    assert (store.root / "mnt2" / "x").read_bytes() == b"x"


@pytest.mark.slow
def test_send_into_a_mount_says_why_and_the_rest_of_the_run_lands(tmp_path: Path) -> None:
    """Through a real daemon and the CLI: a tree sent under the mount fails
    with the store's sentence, exit 1, nothing stored there; the same files
    under another prefix land."""
    from ..conftest import start_daemon, zfile_cli

    root = tmp_path / "store"
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.txt").write_bytes(b"small")
    (src / "large.bin").write_bytes(os.urandom(3 << 20))  # past the inline size: a streamed upload
    with tmpfs_at(root / "mnt") as mnt:
        d = start_daemon(root, tmp_path / "daemon.log")
        try:
            run = zfile_cli("send", str(src), "--to", d.endpoint, "--prefix", "mnt/", check=False)
            assert run.returncode == 1, run.stderr
            for name in ("mnt/src/small.txt", "mnt/src/large.bin"):
                assert f"{name}: '{name}' would be stored on another file system than the store's" in run.stderr
            assert "sent 0 file(s)" in run.stdout and "; 2 failed" in run.stdout
            assert mounted_files(mnt) == []
            zfile_cli("send", str(src), "--to", d.endpoint, "--prefix", "beside/")
            assert (root / "beside" / "src" / "large.bin").read_bytes() == (src / "large.bin").read_bytes()
        finally:
            assert d.stop() == 0


async def test_a_store_whose_private_directory_is_a_mount_of_its_own_does_not_open(tmp_path: Path) -> None:
    """No file could be committed there: said at the open, not at each upload."""
    root = tmp_path / "root"
    with tmpfs_at(root / ".zfile"):
        store = LocalStore(root)
        with pytest.raises(StoreError, match="another file system than its root") as info:
            await store.open()
        assert str(root / ".zfile") in str(info.value)
        assert list(root.iterdir()) == [root / ".zfile"]
