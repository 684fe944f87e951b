"""Unnamed files (O_TMPFILE) for the whole files of a batch: linked to their
names, replaced through a rename, bounded by a descriptor budget, and never
left open or behind when a batch fails."""

from __future__ import annotations

import errno
import os

import pytest

from zfile.errors import BadName, Exists, NameConflict, NoSpace
from zfile.protocol.events import Entry, PutFile
from zfile.store import LocalStore, unnamed, wholes

from .test_local import MTIME_NS, b3, begin, tmp_files

pytestmark = pytest.mark.skipif(unnamed.BUDGET == 0, reason="no O_TMPFILE or /proc here")


def whole(name: str, data: bytes, *, clobber: bool = True, mtime_ns: int = MTIME_NS) -> PutFile:
    return PutFile(name, len(data), mtime_ns, 0o640, b3(data), clobber, data)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def count_calls(monkeypatch: pytest.MonkeyPatch, *names: str) -> dict[str, int]:
    counts = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(os, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, counted)
    return counts


def test_the_budget_grants_at_most_what_is_left() -> None:
    budget = unnamed.Budget(3)
    assert budget.take(2) == 2
    assert budget.take(2) == 1
    assert budget.take(1) == 0
    budget.give(3)
    assert budget.take(5) == 3


async def test_new_files_are_linked_and_stored_files_replaced(store: LocalStore, monkeypatch) -> None:
    before = open_descriptors()
    first = await store.put_many([whole("d/a", b"old a"), whole("d/b", b"old b")], algo="blake3", peer="")
    assert all(isinstance(r, Entry) for r in first)
    calls = count_calls(monkeypatch, "link", "rename")
    again = [whole("d/a", b"new a", mtime_ns=MTIME_NS + 1), whole("d/c", b"c")]
    assert all(isinstance(r, Entry) for r in await store.put_many(again, algo="blake3", peer=""))
    # d/a was there: its link to its name refused, then linked to a partial's name and renamed
    # over it; d/c linked straight to its name.
    assert calls == {"link": 3, "rename": 1}
    assert {p.name: p.read_bytes() for p in (store.root / "d").iterdir()} == {
        "a": b"new a",
        "b": b"old b",
        "c": b"c",
    }
    assert os.stat(store.root / "d" / "a").st_mtime_ns == MTIME_NS + 1
    assert tmp_files(store) == []
    assert open_descriptors() == before


async def test_a_name_taken_on_disk_is_not_clobbered(store: LocalStore) -> None:
    (store.root / "x").write_bytes(b"put there by hand")
    (result,) = await store.put_many([whole("x", b"mine", clobber=False)], algo="blake3", peer="")
    assert isinstance(result, Exists)
    assert (store.root / "x").read_bytes() == b"put there by hand"
    assert tmp_files(store) == []


async def test_a_free_name_is_linked_without_a_look_at_it(store: LocalStore, monkeypatch) -> None:
    (store.root / "d").mkdir()  # not made by the batch: its names could be taken
    calls = count_calls(monkeypatch, "stat", "link")
    assert all(isinstance(r, Entry) for r in await store.put_many([whole("d/a", b"a")], algo="blake3", peer=""))
    assert calls == {"stat": 0, "link": 1}
    assert (store.root / "d" / "a").read_bytes() == b"a"


@pytest.mark.parametrize("clobber", [True, False])
async def test_a_link_or_directory_found_by_the_link_is_refused(store: LocalStore, tmp_path, clobber: bool) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"not the store's")
    (store.root / "ln").symlink_to(outside)
    (store.root / "dir").mkdir()
    (store.root / "dir" / "held").write_bytes(b"")
    (store.root / "empty").mkdir()  # what removals leave: it keeps no file out
    before = open_descriptors()
    files = [whole(n, b"mine", clobber=clobber) for n in ("ln", "dir", "empty")] + [whole("ok", b"ok")]
    results = await store.put_many(files, algo="blake3", peer="")
    assert [type(r) for r in results] == [BadName, NameConflict, Entry, Entry]
    assert "symbolic link" in str(results[0]) and "directory" in str(results[1])
    assert (store.root / "ln").is_symlink() and outside.read_bytes() == b"not the store's"
    assert (store.root / "dir").is_dir() and list((store.root / "dir").iterdir()) == [store.root / "dir" / "held"]
    assert (store.root / "empty").read_bytes() == b"mine"
    assert tmp_files(store) == []
    assert open_descriptors() == before


async def test_a_named_partial_looks_at_its_name_before_the_write(store: LocalStore, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(unnamed, "DESCRIPTORS", unnamed.Budget(0))
    outside = tmp_path / "outside"
    outside.write_bytes(b"not the store's")
    (store.root / "ln").symlink_to(outside)
    (result,) = await store.put_many([whole("ln", b"mine")], algo="blake3", peer="")
    assert isinstance(result, BadName)
    assert (store.root / "ln").is_symlink() and outside.read_bytes() == b"not the store's"
    assert tmp_files(store) == []


async def test_files_past_the_budget_take_named_partials(store: LocalStore, monkeypatch) -> None:
    monkeypatch.setattr(unnamed, "DESCRIPTORS", unnamed.Budget(2))
    calls = count_calls(monkeypatch, "link", "rename")
    files = [whole(f"f{i}", b"%d" % i) for i in range(5)]
    assert all(isinstance(r, Entry) for r in await store.put_many(files, algo="blake3", peer=""))
    assert calls == {"link": 2, "rename": 3}
    assert {p.name: p.read_bytes() for p in store.root.iterdir() if p.name != ".zfile"} == {
        f"f{i}": b"%d" % i for i in range(5)
    }
    assert tmp_files(store) == []
    assert unnamed.DESCRIPTORS.take(2) == 2  # the batch gave its reservation back


async def test_where_o_tmpfile_is_refused_the_batch_names_its_files(store: LocalStore, monkeypatch) -> None:
    tried = []

    def refuse(dir_fd: int, mode: int) -> int:
        tried.append(dir_fd)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(unnamed, "create", refuse)
    files = [whole(f"f{i}", b"%d" % i) for i in range(4)]
    assert all(isinstance(r, Entry) for r in await store.put_many(files, algo="blake3", peer=""))
    assert len(tried) == 1  # once per batch, not once per file
    assert (store.root / "f3").read_bytes() == b"3"
    assert tmp_files(store) == []


async def test_a_failed_batch_closes_its_unnamed_files(store: LocalStore, monkeypatch) -> None:
    def syncfs(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    before = open_descriptors()
    monkeypatch.setattr(wholes, "syncfs", syncfs)
    results = await store.put_many([whole(f"f{i}", b"%d" % i) for i in range(3)], algo="blake3", peer="")
    assert [type(r) for r in results] == [NoSpace] * 3
    assert open_descriptors() == before
    assert sorted(os.listdir(store.root)) == [".zfile"]
    assert tmp_files(store) == []


async def test_a_streamed_partial_of_the_same_file_is_removed(store: LocalStore) -> None:
    data = b"the whole file"
    up = await begin(store, "f", len(data))
    await up.write(0, data[:5])
    await up.suspend()
    assert len(tmp_files(store)) == 2  # its .part and its .json
    (result,) = await store.put_many([whole("f", data)], algo="blake3", peer="")
    assert isinstance(result, Entry)
    assert (store.root / "f").read_bytes() == data
    assert tmp_files(store) == []
    assert len(store.partials) == 0
