"""LocalStore.rename: file and catalog row move in one step for readers,
renames asked together commit together and in their order, refusals leave
both names as they were, and a crash between the rename and the catalog is
settled at the next open."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from zfile.errors import BadName, ErrorCode, Exists, NotFound, ZfileError
from zfile.store import LocalStore

from .test_local import upload


async def test_rename_moves_file_and_row_keeping_the_entry(store: LocalStore) -> None:
    entry = await upload(store, "a/old.bin", b"abc")
    moved = await store.rename("a/old.bin", "b/c/new.bin")
    assert moved == dataclasses.replace(entry, name="b/c/new.bin")
    assert (store.root / "b" / "c" / "new.bin").read_bytes() == b"abc"
    assert not (store.root / "a" / "old.bin").exists()
    assert [e.name for e in await store.list()] == ["b/c/new.bin"]
    with pytest.raises(NotFound):
        await store.open_download("a/old.bin")
    assert await store.catalog.intents() == []


async def test_an_existing_name_is_kept_unless_clobber(store: LocalStore) -> None:
    await upload(store, "x", b"x-bytes")
    await upload(store, "y", b"y-bytes")
    with pytest.raises(Exists):
        await store.rename("x", "y")
    assert (store.root / "y").read_bytes() == b"y-bytes" and (store.root / "x").exists()
    assert [e.name for e in await store.list()] == ["x", "y"]
    await store.rename("x", "y", clobber=True)
    assert (store.root / "y").read_bytes() == b"x-bytes"
    assert [(e.name, e.size) for e in await store.list()] == [("y", 7)]


async def test_missing_and_equal_names_are_refused(store: LocalStore) -> None:
    await upload(store, "here", b"1")
    with pytest.raises(NotFound):
        await store.rename("nowhere", "else")
    with pytest.raises(ZfileError) as info:
        await store.rename("here", "here")
    assert info.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("new", ["../x", "/etc/passwd", ".zfile/catalog.db", "a\x00b", "", "d"])
async def test_hostile_or_unusable_new_names_are_refused(store: LocalStore, new: str) -> None:
    await upload(store, "keep", b"keep")
    await upload(store, "d/inside", b"a directory's file")
    with pytest.raises(BadName):
        await store.rename("keep", new)
    assert (store.root / "keep").read_bytes() == b"keep"
    assert [e.name for e in await store.list()] == ["d/inside", "keep"]


async def test_a_symlink_out_of_the_root_is_refused(store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "link").symlink_to(outside)
    await upload(store, "keep", b"keep")
    with pytest.raises(BadName):
        await store.rename("keep", "link/stolen")
    assert list(outside.iterdir()) == []


async def test_a_download_opened_before_reads_the_whole_old_file(store: LocalStore) -> None:
    data = os.urandom(300_000)
    await upload(store, "big.bin", data)
    await upload(store, "target", b"replaced")
    download = await store.open_download("target")
    try:
        await store.rename("big.bin", "target", clobber=True)
        assert await download.read(0, 100) == b"replaced"
    finally:
        await download.close()
    again = await store.open_download("target")
    try:
        assert await again.read(0, len(data) + 1) == data
    finally:
        await again.close()


async def test_a_crash_between_rename_and_catalog_is_settled_at_open(tmp_path: Path) -> None:
    """What rename leaves when killed after os.replace: the intent recorded,
    the file under its new name, the old row; the next open records the new
    name and forgets the old."""
    root = tmp_path / "root"
    first = LocalStore(root)
    await first.open()
    entry = await upload(first, "old", b"survives")
    moved = dataclasses.replace(entry, name="new")
    await first.catalog.add_intents([("mv-cut", moved)])
    os.replace(root / "old", root / "new")
    await first.close()

    second = LocalStore(root)
    await second.open()
    try:
        assert [(e.name, e.digest) for e in await second.list()] == [("new", entry.digest)]
        assert await second.catalog.intents() == []
    finally:
        await second.close()


async def test_a_crash_before_the_rename_leaves_the_old_name(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = LocalStore(root)
    await first.open()
    entry = await upload(first, "old", b"stays")
    await first.catalog.add_intents([("mv-cut", dataclasses.replace(entry, name="new"))])
    await first.close()

    second = LocalStore(root)
    await second.open()
    try:
        assert [e.name for e in await second.list()] == ["old"]
        assert await second.catalog.intents() == []
    finally:
        await second.close()


async def test_delete_many_removes_files_and_rows_and_reports_each(store: LocalStore) -> None:
    kept = await upload(store, "d/keep", b"keep")
    a = await upload(store, "d/a", b"a")
    b = await upload(store, "e/b", b"b")
    got = await store.delete_many(["d/a", "missing", "../x", "e/b", "d/a"])
    assert got[0] == a and got[3] == b
    assert isinstance(got[1], NotFound) and isinstance(got[2], BadName) and isinstance(got[4], NotFound)
    assert [e.name for e in await store.list()] == ["d/keep"] == [kept.name]
    assert not (store.root / "d" / "a").exists() and not (store.root / "e" / "b").exists()


async def test_delete_many_keeps_reading_what_a_download_opened(store: LocalStore) -> None:
    data = os.urandom(200_000)
    await upload(store, "r", data)
    download = await store.open_download("r")
    try:
        assert [type(r).__name__ for r in await store.delete_many(["r"])] == ["Entry"]
        assert await download.read(0, len(data) + 1) == data
    finally:
        await download.close()


async def test_renames_asked_together_commit_as_one_group(store: LocalStore, monkeypatch) -> None:
    entries = [await upload(store, f"t/f{i:02d}", b"x%d" % i) for i in range(20)]
    groups: list[int] = []
    add_intents = store.catalog.add_intents

    async def counted(intents):
        groups.append(len(intents))
        return await add_intents(intents)

    monkeypatch.setattr(store.catalog, "add_intents", counted)
    moved = await asyncio.gather(*(store.rename(e.name, f"u/f{i:02d}") for i, e in enumerate(entries)))
    assert moved == [dataclasses.replace(e, name=f"u/f{i:02d}") for i, e in enumerate(entries)]
    assert sum(groups) == 20 and len(groups) < 20 and max(groups) > 1
    assert [e.name for e in await store.list()] == [f"u/f{i:02d}" for i in range(20)]
    assert all((store.root / "u" / f"f{i:02d}").read_bytes() == b"x%d" % i for i in range(20))
    assert not (store.root / "t").exists() or not any((store.root / "t").iterdir())
    assert await store.catalog.intents() == []


async def test_renames_asked_together_happen_in_their_order(store: LocalStore) -> None:
    await upload(store, "a", b"from a")
    await upload(store, "b", b"from b")
    first, second = await asyncio.gather(store.rename("a", "b", clobber=True), store.rename("b", "c"))
    assert (first.name, second.name) == ("b", "c")
    assert [e.name for e in await store.list()] == ["c"]
    assert (store.root / "c").read_bytes() == b"from a"


async def test_each_rename_of_a_group_gets_its_own_answer(store: LocalStore) -> None:
    await upload(store, "ok", b"ok")
    await upload(store, "mine", b"mine")
    await upload(store, "theirs", b"theirs")
    results = await asyncio.gather(
        store.rename("ok", "done"),
        store.rename("missing", "elsewhere"),
        store.rename("mine", "theirs"),
        return_exceptions=True,
    )
    assert results[0].name == "done"
    assert isinstance(results[1], NotFound) and isinstance(results[2], Exists)
    assert [e.name for e in await store.list()] == ["done", "mine", "theirs"]
    assert (store.root / "theirs").read_bytes() == b"theirs"
    assert await store.catalog.intents() == []


async def test_a_rename_goes_on_when_its_caller_stops_waiting(store: LocalStore) -> None:
    await upload(store, "slow", b"slow")
    asked = asyncio.ensure_future(store.rename("slow", "quick"))
    await asyncio.sleep(0)  # asked, then given up on
    asked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asked
    for _ in range(200):
        if [e.name for e in await store.list()] == ["quick"]:
            break
        await asyncio.sleep(0.01)
    assert [e.name for e in await store.list()] == ["quick"]
    assert (store.root / "quick").read_bytes() == b"slow"


async def test_a_crash_inside_a_group_of_renames_is_settled_at_open(tmp_path: Path) -> None:
    """The group's intents are one row: files renamed before the crash are
    recorded under their new names, the others keep their old ones."""
    root = tmp_path / "root"
    first = LocalStore(root)
    await first.open()
    one = await upload(first, "one", b"1")
    two = await upload(first, "two", b"2")
    await first.catalog.add_intents(
        [("mv-a", dataclasses.replace(one, name="uno")), ("mv-b", dataclasses.replace(two, name="dos"))]
    )
    os.replace(root / "one", root / "uno")  # the crash came before "two" moved
    await first.close()

    second = LocalStore(root)
    await second.open()
    try:
        assert [(e.name, e.digest) for e in await second.list()] == [("two", two.digest), ("uno", one.digest)]
        assert await second.catalog.intents() == []
    finally:
        await second.close()
