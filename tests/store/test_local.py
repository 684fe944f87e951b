"""Tests of zfile.protocol.names, zfile.store.catalog and zfile.store.local against a real temporary directory."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import threading
import time
from pathlib import Path

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zfile.errors import (
    BadName,
    Busy,
    ErrorCode,
    Exists,
    IntegrityError,
    NoSpace,
    NotFound,
    StoreError,
    TooLarge,
    ZfileError,
)
from zfile.fileio.direct import DirectAppender
from zfile.protocol.events import Entry
from zfile.protocol.names import check_name, check_prefix
from zfile.store import LocalStore
from zfile.store.catalog import Catalog

MTIME_NS = 1_600_000_000_123_456_789

HOSTILE_NAMES = [
    "../x",
    "/etc/passwd",
    "a/../../b",
    "a/..",
    "a/./b",
    "a\x00b",
    "a\nb",
    "a\x7fb",
    "csi\x9b31m",
    "a\x80b",
    "d/" + "c" * 256,
    ".",
    "..",
    "",
    "a//b",
    "a/",
    "x" * 5000,
    ".zfile/catalog.db",
    ".zfile",
    "\udcff",
]


def b3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


async def begin(store: LocalStore, name: str, size: int, *, mtime_ns: int = MTIME_NS, clobber: bool = True, **kw):
    return await store.begin_upload(
        name=name,
        size=size,
        mtime_ns=mtime_ns,
        mode=kw.pop("mode", 0o640),
        algo=kw.pop("algo", "blake3"),
        clobber=clobber,
        peer=kw.pop("peer", "peer-1"),
    )


async def upload(store: LocalStore, name: str, data: bytes, **kw) -> Entry:
    up = await begin(store, name, len(data), **kw)
    await up.write(0, data)
    return await up.commit(b3(data))


def tmp_files(store: LocalStore) -> list[str]:
    return sorted(os.listdir(store.root / ".zfile" / "tmp"))


# -- names ---------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_check_name_refuses_hostile(name: str) -> None:
    with pytest.raises(BadName) as info:
        check_name(name)
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert len(str(info.value)) < 300  # a 5000-char name is shortened in the message


@pytest.mark.parametrize("name", ["a", "a/b/c.txt", "back\\slash", ".hidden", "a/.zfile", "..x", "é/ü", "a b"])
def test_check_name_accepts_ordinary(name: str) -> None:
    assert check_name(name) == name


def test_check_name_byte_limit_counts_utf8() -> None:
    assert check_name("é" * 5, max_bytes=10) == "é" * 5
    with pytest.raises(BadName, match="11 bytes"):
        check_name("é" * 5 + "x", max_bytes=10)


@pytest.mark.parametrize("prefix", ["", "a", "a/", "a/b", "a%_", ".z"])
def test_check_prefix_accepts(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "/a", "a//", "../", ".zfile/", "a\x00", "..", "\udcff"])
def test_check_prefix_refuses(prefix: str) -> None:
    with pytest.raises(BadName):
        check_prefix(prefix)


@given(st.text(min_size=1, max_size=40))
def test_accepted_names_stay_inside_root(name: str) -> None:
    try:
        check_name(name)
    except BadName:
        return
    joined = os.path.normpath(os.path.join("/root", name))
    assert joined.startswith("/root/")
    assert not (joined + "/").startswith("/root/.zfile/")


# -- catalog -------------------------------------------------------------------


async def test_catalog_put_replaces_same_name(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.db")
    await cat.open()
    try:
        first = Entry("a", 1, 2, 0o644, "blake3", b"\x01", 3.0, "id1", "p")
        second = Entry("a", 5, 6, 0o600, "blake3", b"\x02", 7.0, "id2", "q")
        await cat.put(first)
        await cat.put(second)
        assert await cat.get("a") == second
        assert await cat.all_entries() == [second]
        await cat.delete("a")
        assert await cat.get("a") is None
    finally:
        await cat.close()
    with pytest.raises(StoreError, match="not open"):
        await cat.get("a")


async def test_catalog_sqlite_error_becomes_store_error(tmp_path: Path) -> None:
    (tmp_path / "c.db").write_bytes(b"this is not a database" * 100)
    cat = Catalog(tmp_path / "c.db")
    with pytest.raises(StoreError) as info:
        await cat.open()
    assert info.value.code is ErrorCode.INTERNAL
    assert "c.db" in str(info.value)


# -- hostile names and symlinks ------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_store_refuses_hostile_names(store: LocalStore, name: str) -> None:
    with pytest.raises(BadName):
        await begin(store, name, 1)
    with pytest.raises(BadName):
        await store.open_download(name)
    with pytest.raises(BadName):
        await store.lookup(name)
    assert tmp_files(store) == []


async def test_symlink_out_of_root_refused(store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (store.root / "link").symlink_to(outside)
    with pytest.raises(BadName, match="outside"):
        await begin(store, "link/new", 1)
    # Download: even a catalog entry (planted here) must not lead through the link.
    await store.catalog.put(Entry("link/secret", 6, 0, 0o644, "blake3", b3(b"secret"), 0.0, "x", ""))
    with pytest.raises(BadName, match="outside"):
        await store.open_download("link/secret")
    assert sorted(os.listdir(outside)) == ["secret"]


async def test_symlink_at_final_name_refused(store: LocalStore, tmp_path: Path) -> None:
    target = tmp_path / "outside-file"
    target.write_bytes(b"keep")
    (store.root / "f").symlink_to(target)
    with pytest.raises(BadName, match="symbolic link"):
        await begin(store, "f", 1)
    await store.catalog.put(Entry("f", 4, 0, 0o644, "blake3", b3(b"keep"), 0.0, "x", ""))
    with pytest.raises(BadName, match="symbolic link"):
        await store.open_download("f")
    assert target.read_bytes() == b"keep"


async def test_symlink_into_private_dir_refused(store: LocalStore) -> None:
    (store.root / "priv").symlink_to(store.root / ".zfile")
    with pytest.raises(BadName):
        await begin(store, "priv/catalog.db", 1)


async def test_directory_and_file_in_the_way(store: LocalStore) -> None:
    (store.root / "d").mkdir()
    (store.root / "d" / "held").write_bytes(b"")
    with pytest.raises(BadName, match="directory"):
        await begin(store, "d", 1)
    await upload(store, "file", b"x")
    with pytest.raises(BadName, match="file"):
        await begin(store, "file/child", 1)


async def test_an_empty_directory_left_by_removals_does_not_keep_a_file_out(store: LocalStore) -> None:
    # zfile keeps files, not directories: e/ once held e/f, removed since; a file "e" may now be stored.
    await upload(store, "e/f", b"f")
    await store.delete("e/f")
    assert (store.root / "e").is_dir()
    assert (await upload(store, "e", b"now a file")).name == "e"
    assert (store.root / "e").read_bytes() == b"now a file"
    await upload(store, "g/h", b"h")
    await store.delete("g/h")
    assert (await store.rename("e", "g")).name == "g"  # a rename too
    assert (store.root / "g").read_bytes() == b"now a file"


# -- uploads -------------------------------------------------------------------


async def test_upload_in_three_writes(store: LocalStore) -> None:
    data = os.urandom(3000)
    up = await begin(store, "sub/dir/f.bin", len(data), mode=0o4751, peer="alice")
    assert up.offset == 0 and up.size == 3000
    for start in (0, 1000, 2000):
        await up.write(start, memoryview(data)[start : start + 1000])
    entry = await up.commit(b3(data))
    final = store.root / "sub" / "dir" / "f.bin"
    assert final.read_bytes() == data
    st_ = final.stat()
    assert stat.S_IMODE(st_.st_mode) == 0o751  # setuid bit masked off
    assert st_.st_mtime_ns == MTIME_NS
    assert (entry.name, entry.size, entry.digest, entry.mode, entry.peer) == (
        "sub/dir/f.bin",
        3000,
        b3(data),
        0o751,
        "alice",
    )
    assert abs(entry.received - time.time()) < 60 and len(entry.id) == 32
    assert await store.lookup("sub/dir/f.bin") == entry
    assert tmp_files(store) == []


async def test_uncommitted_upload_leaves_nothing_visible(store: LocalStore) -> None:
    up = await begin(store, "d/f", 10)
    await up.write(0, b"12345")
    assert not (store.root / "d").exists()
    await up.suspend()
    assert not (store.root / "d").exists()
    assert sorted(os.listdir(store.root)) == [".zfile"]
    with pytest.raises(NotFound):
        await store.lookup("d/f")
    with pytest.raises(StoreError, match="finished"):
        await up.write(5, b"67890")


async def test_digest_mismatch(store: LocalStore) -> None:
    up = await begin(store, "f", 4)
    await up.write(0, b"abcd")
    with pytest.raises(IntegrityError, match="digest"):
        await up.commit(b3(b"abce"))
    assert not (store.root / "f").exists()
    assert tmp_files(store) == []
    up2 = await begin(store, "f", 4)
    assert up2.offset == 0  # the bad partial was not kept for resume
    await up2.abort()


async def test_size_mismatch(store: LocalStore) -> None:
    up = await begin(store, "f", 4)
    await up.write(0, b"abc")
    with pytest.raises(IntegrityError, match="3 of 4"):
        await up.commit(b3(b"abc"))
    assert not (store.root / "f").exists()
    up2 = await begin(store, "g", 2)
    with pytest.raises(IntegrityError, match="past"):
        await up2.write(0, b"abc")
    with pytest.raises(IntegrityError, match="next byte is 0"):
        await up2.write(1, b"a")
    await up2.abort()


async def test_replace_is_atomic(store: LocalStore) -> None:
    v1, v2 = b"version one", b"version two, longer"
    await upload(store, "f", v1)
    up = await begin(store, "f", len(v2), mtime_ns=MTIME_NS + 1)
    await up.write(0, v2[:5])
    assert (store.root / "f").read_bytes() == v1
    dl = await store.open_download("f")
    await up.write(5, v2[5:])
    assert (store.root / "f").read_bytes() == v1
    await up.commit(b3(v2))
    assert (store.root / "f").read_bytes() == v2
    # A download opened before the replace keeps reading the old bytes and entry.
    assert await dl.read(0, 100) == v1 and dl.entry.size == len(v1)
    await dl.close()
    entries = await store.list()
    assert [(e.name, e.size) for e in entries] == [("f", len(v2))]


async def test_clobber_false(store: LocalStore) -> None:
    await upload(store, "f", b"one")
    with pytest.raises(Exists):
        await begin(store, "f", 3, clobber=False)
    (store.root / "uncatalogued").write_bytes(b"x")
    with pytest.raises(Exists):
        await begin(store, "uncatalogued", 1, clobber=False)
    entry = await upload(store, "new", b"two", clobber=False)
    assert entry.size == 3


async def test_clobber_false_loses_race(store: LocalStore) -> None:
    up = await begin(store, "f", 1, clobber=False)
    await up.write(0, b"a")
    await upload(store, "f", b"b", mtime_ns=MTIME_NS + 1)
    with pytest.raises(Exists):
        await up.commit(b3(b"a"))
    assert (store.root / "f").read_bytes() == b"b"


async def test_too_large_and_bad_algo(store: LocalStore) -> None:
    with pytest.raises(TooLarge):
        await begin(store, "big", (1 << 20) + 1)
    with pytest.raises(ZfileError, match="not supported") as info:
        await begin(store, "f", 1, algo="md5")
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert tmp_files(store) == []


async def test_no_space_at_begin(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.statvfs(store.root)

    class Full:
        f_bavail, f_frsize = 10, real.f_frsize

    monkeypatch.setattr(os, "statvfs", lambda path: Full)
    with pytest.raises(NoSpace):
        await begin(store, "f", 10 * real.f_frsize + 1)
    up = await begin(store, "f", 10 * real.f_frsize)
    await up.abort()


async def test_resume(store: LocalStore) -> None:
    data = os.urandom(10_000)
    up = await begin(store, "r", len(data))
    transfer = up.transfer
    await up.write(0, data[:5000])
    assert up.written_digest() == b3(data[:5000])
    await up.suspend()
    up = await begin(store, "r", len(data))
    assert (up.transfer, up.offset) == (transfer, 5000)
    await up.write(5000, data[5000:])
    assert up.written_digest() == b3(data)  # the resumed prefix counted in
    entry = await up.commit(b3(data))
    assert entry.digest == b3(data)
    assert (store.root / "r").read_bytes() == data


async def test_resume_survives_reopen(tmp_path: Path) -> None:
    s = LocalStore(tmp_path / "root")
    await s.open()
    up = await begin(s, "r", 6)
    await up.write(0, b"abc")
    await s.close()  # suspends live uploads
    s = LocalStore(tmp_path / "root")
    await s.open()
    up = await begin(s, "r", 6)
    assert up.offset == 3
    await up.write(3, b"def")
    await up.commit(b3(b"abcdef"))
    await s.close()


async def test_resume_with_other_mtime_starts_fresh(store: LocalStore) -> None:
    up = await begin(store, "r", 10)
    await up.write(0, b"12345")
    await up.suspend()
    other = await begin(store, "r", 10, mtime_ns=MTIME_NS + 1)
    assert other.offset == 0 and other.transfer != up.transfer
    await other.abort()
    original = await begin(store, "r", 10)
    assert original.offset == 5
    await original.abort()


async def test_busy(store: LocalStore) -> None:
    up = await begin(store, "b", 10)
    with pytest.raises(Busy, match="already in progress"):
        await begin(store, "b", 10)
    results = await asyncio.gather(begin(store, "c", 4), begin(store, "c", 4), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Busy", "Upload"]
    await up.suspend()
    again = await begin(store, "b", 10)
    await again.abort()
    for r in results:
        if not isinstance(r, Exception):
            await r.abort()


async def test_no_space_while_writing(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    await upload(store, "f", b"committed")

    def full(appender, data, hasher):
        raise OSError(errno.ENOSPC, "No space left on device")

    up = await begin(store, "f", 100)
    await up.write(0, b"x" * 10)
    monkeypatch.setattr(DirectAppender, "append", full)
    with pytest.raises(NoSpace, match="no space left") as info:
        await up.write(10, b"y" * 10)
    assert info.value.code is ErrorCode.NO_SPACE
    assert tmp_files(store) == []
    assert (store.root / "f").read_bytes() == b"committed"


async def test_other_os_error_is_store_error(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(appender, data, hasher):
        raise OSError(errno.EIO, "Input/output error")

    up = await begin(store, "f", 100)
    monkeypatch.setattr(DirectAppender, "append", broken)
    with pytest.raises(StoreError, match="'f'.*Input/output error") as info:
        await up.write(0, b"x")
    assert type(info.value) is StoreError and info.value.code is ErrorCode.INTERNAL


async def test_cancelled_write_blocks_commit(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()

    def stuck(appender, data, hasher):
        started.set()
        release.wait(10)  # the write never lands

    up = await begin(store, "f", 2)
    monkeypatch.setattr(DirectAppender, "append", stuck)
    task = asyncio.create_task(up.write(0, b"ab"))
    try:
        await asyncio.to_thread(started.wait)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(StoreError, match="interrupted"):
            await up.commit(b3(b"ab"))
    finally:
        release.set()
    await up.suspend()
    assert not (store.root / "f").exists()


async def test_a_cancelled_write_finishes_before_the_partial_is_closed(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker thread keeps writing after its caller is cancelled; closing the
    # descriptor under it would let a reused descriptor number take the bytes.
    events: list[str] = []
    entered = threading.Event()
    real = DirectAppender.append
    up = await begin(store, "f", 2)
    part = os.path.realpath(store.layout.part_path(up.transfer))

    def is_part(fd: int | str) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}") == part
        except FileNotFoundError:
            return False

    def slow_write(appender, data, hasher):
        entered.set()
        time.sleep(0.3)
        real(appender, data, hasher)
        appender.flush()  # what a direct write would keep for later is written too
        events.append("written" if is_part(appender.fd) else "written after the partial was closed")

    monkeypatch.setattr(DirectAppender, "append", slow_write)
    task = asyncio.create_task(up.write(0, b"ab"))
    await asyncio.to_thread(entered.wait)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await up.suspend()
    events.append("still open" if any(is_part(fd) for fd in os.listdir("/proc/self/fd")) else "closed")
    assert events == ["written", "closed"]


# -- inline, download, list ----------------------------------------------------


async def test_put_inline_round_trip(store: LocalStore) -> None:
    data = b"small file"
    entry = await store.put_inline(
        name="in/line",
        size=len(data),
        mtime_ns=MTIME_NS,
        mode=0o600,
        algo="blake3",
        clobber=True,
        peer="p",
        data=memoryview(data),
        digest=b3(data),
    )
    assert entry.digest == b3(data) and entry.size == len(data)
    dl = await store.open_download("in/line")
    assert await dl.read(0, 1000) == data
    await dl.close()
    kw = dict(mtime_ns=MTIME_NS, mode=0o600, algo="blake3", clobber=True, peer="p")
    with pytest.raises(IntegrityError):
        await store.put_inline(name="bad", size=3, data=b"abcd", digest=b3(b"abcd"), **kw)
    with pytest.raises(IntegrityError):
        await store.put_inline(name="bad", size=4, data=b"abcd", digest=b3(b"abce"), **kw)
    entry = await store.put_inline(name="empty", size=0, data=b"", digest=b3(b""), **kw)
    assert (store.root / "empty").read_bytes() == b""
    assert not (store.root / "bad").exists()
    assert tmp_files(store) == []


async def test_download_read_at_offsets(store: LocalStore) -> None:
    data = bytes(range(256)) * 4
    entry = await upload(store, "d", data)
    dl = await store.open_download("d")
    assert dl.entry == entry
    assert await dl.read(0, 10) == data[:10]
    assert await dl.read(10, 10) == data[10:20]
    assert await dl.read(500, 100) == data[500:600]
    assert await dl.read(5, 3) == data[5:8]
    assert await dl.read(1000, 100) == data[1000:]
    assert await dl.read(1024, 10) == b""
    assert await dl.read(5000, 10) == b""
    with pytest.raises(ZfileError):
        await dl.read(-1, 1)
    await dl.close()
    with pytest.raises(StoreError, match="closed"):
        await dl.read(0, 1)


async def test_download_missing(store: LocalStore) -> None:
    with pytest.raises(NotFound):
        await store.open_download("nope")
    await upload(store, "gone", b"x")
    os.unlink(store.root / "gone")
    with pytest.raises(NotFound, match="missing"):
        await store.open_download("gone")


async def test_list_paging_and_wildcards(store: LocalStore) -> None:
    names = [f"p/f{i:02d}" for i in range(10)] + ["a%b/1", "a_b/1", "axb/1", "ab/1", "q", "p.txt"]
    for name in names:
        await upload(store, name, name.encode())
    got, after = [], ""
    while page := await store.list("p/", after, 3):
        assert len(page) <= 3
        got += [e.name for e in page]
        after = page[-1].name
    assert got == [f"p/f{i:02d}" for i in range(10)]
    assert [e.name for e in await store.list("a%")] == ["a%b/1"]
    assert [e.name for e in await store.list("a_")] == ["a_b/1"]
    assert [e.name for e in await store.list("a")] == ["a%b/1", "a_b/1", "ab/1", "axb/1"]
    assert [e.name for e in await store.list("p")][:2] == ["p.txt", "p/f00"]
    assert len(await store.list()) == len(names)
    assert await store.list("p/", "", 0) == []
    with pytest.raises(BadName):
        await store.list("../")


# -- sweeping ------------------------------------------------------------------


async def test_sweep_partials(store: LocalStore) -> None:
    old = await begin(store, "old", 10)
    await old.write(0, b"1")
    await old.suspend()
    new = await begin(store, "new", 10)
    await new.write(0, b"1")
    await new.suspend()
    live = await begin(store, "live", 10)
    past = time.time() - 2 * store.partial_ttl
    for transfer in (old.transfer, live.transfer):
        for ext in ("json", "part"):
            os.utime(store.root / ".zfile" / "tmp" / f"{transfer}.{ext}", (past, past))
    assert await store.sweep_partials() == 1
    assert tmp_files(store) == sorted(f"{t}.{e}" for t in (new.transfer, live.transfer) for e in ("json", "part"))
    resumed = await begin(store, "new", 10)
    assert resumed.offset == 1
    await live.abort()
    later = time.time() + 2 * store.partial_ttl
    assert await store.sweep_partials(now=later) == 0  # in use
    await resumed.suspend()
    assert await store.sweep_partials(now=later) == 1
    assert tmp_files(store) == []
