"""The directories of a batch: a directory the batch made needs no lstat of
its names, and a name taken in it is still refused or replaced atomically."""

from __future__ import annotations

import os

import pytest

from zfile.errors import Exists, StoreError
from zfile.protocol.events import Entry, PutFile
from zfile.store import LocalStore, unnamed

from .test_local import MTIME_NS, b3, tmp_files


def whole(name: str, data: bytes, *, clobber: bool = True, mtime_ns: int = MTIME_NS) -> PutFile:
    return PutFile(name, len(data), mtime_ns, 0o640, b3(data), clobber, data)


def stats_of(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    looked: list[str] = []
    real = os.stat

    def stat(path, *args, **kwargs):
        if kwargs.get("dir_fd") is not None:
            looked.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    return looked


async def test_names_in_a_directory_the_batch_made_are_not_looked_up(store: LocalStore, monkeypatch) -> None:
    (store.root / "old").mkdir()
    # Named partials: an unnamed file's name is not looked up anywhere (tests/store/test_unnamed.py).
    monkeypatch.setattr(unnamed, "DESCRIPTORS", unnamed.Budget(0))
    looked = stats_of(monkeypatch)
    files = [whole("new/deep/a", b"a"), whole("new/deep/b", b"b"), whole("old/c", b"c")]
    assert all(isinstance(r, Entry) for r in await store.put_many(files, algo="blake3", peer=""))
    assert "a" not in looked and "b" not in looked and "c" in looked
    assert (store.root / "new" / "deep" / "b").read_bytes() == b"b"


async def test_a_name_taken_twice_in_a_new_directory(store: LocalStore) -> None:
    files = [
        whole("n/x", b"first"),
        whole("n/x", b"second", clobber=False, mtime_ns=MTIME_NS + 1),
        whole("n/y", b"one"),
        whole("n/y", b"two", mtime_ns=MTIME_NS + 1),
    ]
    results = await store.put_many(files, algo="blake3", peer="")
    assert [type(r) for r in results] == [Entry, Exists, Entry, Entry]
    assert (store.root / "n" / "x").read_bytes() == b"first"
    assert (store.root / "n" / "y").read_bytes() == b"two"
    assert tmp_files(store) == []


async def test_a_root_gone_fails_the_batch_naming_the_root_not_a_file(store: LocalStore) -> None:
    # The operator removed the partials' directory (or the whole root) under a running daemon.
    os.rmdir(store.root / ".zfile" / "tmp")
    results = await store.put_many([whole("a/x", b"x"), whole("y", b"y")], algo="blake3", peer="")
    assert [type(r) for r in results] == [StoreError, StoreError]
    assert str(results[1]) == (
        f"could not open the store's root {os.path.realpath(store.root)} or its partials' directory: "
        "No such file or directory"
    )
    assert not (store.root / "y").exists()
