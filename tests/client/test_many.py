"""Many small files in one message (PUT-MANY): each file is stored or refused
on its own, in the store, through the daemon, and from the client and CLI."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from zfile.client.client import Client, Result
from zfile.client.config import ClientConfig
from zfile.client.tree import MANY_FILES, send_paths
from zfile.errors import (
    BadName,
    Busy,
    ErrorCode,
    Exists,
    IntegrityError,
    LocalFileError,
    NameConflict,
    NoSpace,
    RemoteError,
    TooLarge,
)
from zfile.protocol.events import Entry, PutFile
from zfile.store import LocalStore, group_commit, unnamed, wholes

from ..conftest import make_late, zfile_cli
from ..store.test_local import b3, tmp_files

MTIME_NS = 1_600_000_000_123_456_789


def whole(name: str, data: bytes, *, digest: bytes | None = None, clobber: bool = True, mode: int = 0o640) -> PutFile:
    return PutFile(name, len(data), MTIME_NS, mode, b3(data) if digest is None else digest, clobber, data)


# -- the store -----------------------------------------------------------------


async def test_each_file_of_a_batch_is_stored_or_refused_alone(store: LocalStore) -> None:
    (store.root / "kept.txt").write_bytes(b"old")
    await store.put_inline(
        name="kept.txt", size=3, mtime_ns=MTIME_NS, mode=0o644, algo="blake3", clobber=True, peer="p",
        data=b"old", digest=b3(b"old"),
    )  # fmt: skip
    files = [
        whole("a/one.txt", b"one", mode=0o600),
        whole("../escape.txt", b"bad name"),
        whole("kept.txt", b"new", clobber=False),
        whole("a/lying.txt", b"bytes", digest=b3(b"other bytes")),
        whole("big.bin", b"x" * ((1 << 20) + 1)),
        whole("a/empty", b""),
        whole("a/one.txt", b"one", mode=0o600),  # same name, size and mtime as the first: busy
        whole("b/two.txt", b"two"),
    ]
    results = await store.put_many(files, algo="blake3", peer="peer-1")
    kinds = [type(r) for r in results]
    assert kinds == [Entry, BadName, Exists, IntegrityError, TooLarge, Entry, Busy, Entry]
    assert (store.root / "a" / "one.txt").read_bytes() == b"one"
    assert (store.root / "a" / "one.txt").stat().st_mode & 0o7777 == 0o600
    assert (store.root / "a" / "one.txt").stat().st_mtime_ns == MTIME_NS
    assert (store.root / "a" / "empty").read_bytes() == b""
    assert (store.root / "kept.txt").read_bytes() == b"old"
    assert not (store.root / "a" / "lying.txt").exists() and not (store.root / "big.bin").exists()
    assert not (store.root.parent / "escape.txt").exists()
    listed = {e.name: e for e in await store.list()}
    assert sorted(listed) == ["a/empty", "a/one.txt", "b/two.txt", "kept.txt"]
    assert listed["b/two.txt"].digest == b3(b"two") and listed["b/two.txt"].peer == "peer-1"
    assert tmp_files(store) == []
    assert len(store.claims) == 0


async def test_a_batch_follows_links_inside_the_store_and_refuses_the_rest(store: LocalStore, tmp_path: Path) -> None:
    # The batch opens directories with O_NOFOLLOW; what that walk cannot follow gets the full path check.
    (store.root / "real").mkdir()
    (store.root / "inside").symlink_to("real")
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "out").symlink_to(outside)
    (store.root / "plain").write_bytes(b"a file, not a directory")
    (store.root / "d").mkdir()
    (store.root / "d" / "link").symlink_to("../real")
    files = [
        whole("inside/a.txt", b"a"),
        whole("out/b.txt", b"b"),
        whole("plain/c.txt", b"c"),
        whole("d/link", b"over a symlink"),
        whole("real", b"over a directory"),
        whole("new/deep/e.txt", b"e"),
    ]
    results = await store.put_many(files, algo="blake3", peer="")
    assert [type(r) for r in results] == [Entry, BadName, NameConflict, BadName, NameConflict, Entry]
    assert (store.root / "real" / "a.txt").read_bytes() == b"a"
    assert (store.root / "new" / "deep" / "e.txt").read_bytes() == b"e"
    assert list(outside.iterdir()) == []
    assert {e.name for e in await store.list()} == {"inside/a.txt", "new/deep/e.txt"}
    assert tmp_files(store) == []
    assert len(store.claims) == 0


async def test_a_failed_syncfs_fails_the_whole_batch(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # One syncfs makes the batch durable, so when it fails no file of the batch may be published.
    def syncfs(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wholes, "syncfs", syncfs)
    results = await store.put_many(
        [whole("a.txt", b"a"), whole("b.txt", b"b"), whole("c.txt", b"c")], algo="blake3", peer=""
    )
    assert [type(r) for r in results] == [NoSpace, NoSpace, NoSpace]
    assert sorted(p.name for p in store.root.iterdir() if p.name != ".zfile") == []
    assert await store.list() == []
    assert tmp_files(store) == []
    assert len(store.claims) == 0


@pytest.mark.parametrize("unnamed_files", [4096, 0])
async def test_a_batch_is_synced_once_after_every_write_and_before_any_rename(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch, unnamed_files: int
) -> None:
    # The point of the batch: one syncfs covers every file, and no file reaches its name before it.
    # Unnamed files are linked, then synced again (their link counts); named partials are renamed.
    calls: list[str] = []
    real_syncfs, real_rename, real_link, real_write = wholes.syncfs, os.rename, os.link, os.write
    monkeypatch.setattr(unnamed, "DESCRIPTORS", unnamed.Budget(unnamed_files))
    monkeypatch.setattr(wholes, "syncfs", lambda fd: (calls.append("syncfs"), real_syncfs(fd))[1])
    monkeypatch.setattr(group_commit, "syncfs", lambda fd: (calls.append("syncfs"), real_syncfs(fd))[1])
    monkeypatch.setattr(os, "rename", lambda *a, **k: (calls.append("rename"), real_rename(*a, **k))[1])
    monkeypatch.setattr(os, "link", lambda *a, **k: (calls.append("link"), real_link(*a, **k))[1])
    monkeypatch.setattr(os, "write", lambda fd, b: (calls.append("write"), real_write(fd, b))[1])
    results = await store.put_many([whole(f"d/f{i}", b"%d" % i) for i in range(5)], algo="blake3", peer="")
    assert all(isinstance(r, Entry) for r in results)
    published = ["link"] * 5 + ["syncfs"] if unnamed_files else ["rename"] * 5
    assert calls == ["write"] * 5 + ["syncfs"] + published
    assert {e.name for e in await store.list()} == {f"d/f{i}" for i in range(5)}
    assert tmp_files(store) == []


# -- through the daemon --------------------------------------------------------


def make_tree(root: Path, count: int, size: int = 100) -> dict[str, bytes]:
    files = {}
    for i in range(count):
        data = os.urandom(size + i % 7)
        path = root / f"d{i % 3}" / f"f{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[path.relative_to(root.parent).as_posix()] = data
    return files


@pytest.mark.slow
async def test_put_many_reports_each_file(daemon, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_bytes(b"good")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300 << 10))  # over inline_max: goes on its own
    async with Client(daemon.endpoint) as client:
        results = await client.put_many(
            [(good, "x/good.txt"), (tmp_path / "missing", "x/missing"), (fifo, "x/fifo"), (big, "x/big.bin"),
             (good, "../escape.txt"), (good, "x/good-2.txt")]
        )  # fmt: skip
        assert isinstance(results[0], Result) and results[0].digest == b3(b"good")
        assert isinstance(results[1], LocalFileError) and isinstance(results[2], LocalFileError)
        assert isinstance(results[3], Result) and results[3].size == 300 << 10
        assert isinstance(results[4], RemoteError) and results[4].code is ErrorCode.BAD_REQUEST
        assert isinstance(results[5], Result)
        names = sorted([e.name async for e in client.list("x/")])
    assert names == ["x/big.bin", "x/good-2.txt", "x/good.txt"]
    assert (daemon.root / "x" / "big.bin").read_bytes() == big.read_bytes()
    assert not (daemon.root.parent / "escape.txt").exists()


async def test_a_file_whose_mtime_no_message_can_carry_fails_alone(daemon, tmp_path: Path) -> None:
    """put and put_many refuse such a file by itself, saying why, where its
    PUT-MANY would have been refused whole."""
    good = tmp_path / "good.txt"
    good.write_bytes(b"good")
    late = tmp_path / "late.txt"
    late.write_bytes(b"late")
    make_late(late)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300 << 10))
    make_late(big)
    async with Client(daemon.endpoint) as client:
        results = await client.put_many([(good, "good.txt"), (late, "late.txt"), (big, "big.bin")])
        assert isinstance(results[0], Result)
        for r in results[1:]:
            assert isinstance(r, LocalFileError) and "is after 2262-04-11" in str(r), r
        with pytest.raises(LocalFileError, match="late.txt: its mtime, 2446-05-10T22:38:55Z"):
            await client.put(late, "late.txt")
        assert [e.name async for e in client.list("")] == ["good.txt"]


@pytest.mark.slow
async def test_a_file_answered_busy_is_sent_again_on_its_own(daemon, tmp_path: Path) -> None:
    src = tmp_path / "same.txt"
    src.write_bytes(b"twice in one message")
    async with Client(ClientConfig(daemon.endpoint, busy_backoff=0.01)) as client:
        results = await client.put_many([(src, "same.txt"), (src, "same.txt")])
    assert all(isinstance(r, Result) for r in results), results
    assert (daemon.root / "same.txt").read_bytes() == src.read_bytes()


@pytest.mark.slow
async def test_send_paths_batches_small_files_and_streams_large(daemon, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    files = make_tree(tree, MANY_FILES + 40)
    (tree / "large.bin").write_bytes(large := os.urandom(3 << 20))
    files["tree/large.bin"] = large
    sent: list[int] = []
    async with Client(daemon.endpoint) as client:
        outcomes = await send_paths(client, [tree], progress=sent.append)
        assert [o.error for o in outcomes if o.error] == []
        stored = {e.name: e.digest async for e in client.list("tree/")}
    assert stored == {name: b3(data) for name, data in files.items()}
    assert sum(sent) == sum(len(d) for d in files.values())
    for name, data in files.items():
        assert (daemon.root / name).read_bytes() == data


@pytest.mark.slow
def test_cli_reports_the_refused_file_and_sends_the_rest(daemon, tmp_path: Path) -> None:
    tree = tmp_path / "docs"
    files = make_tree(tree, 30)
    taken = sorted(files)[5]
    old = tmp_path / "old.bin"
    old.write_bytes(b"stored before")

    async def put_old() -> None:
        async with Client(daemon.endpoint) as client:
            await client.put(old, taken)

    asyncio.run(put_old())
    res = zfile_cli("send", str(tree), "--to", daemon.endpoint, "--no-clobber", check=False)
    assert res.returncode == 1
    assert "zfile: error:" in res.stderr and taken in res.stderr and "exists" in res.stderr
    assert "Traceback" not in res.stderr
    assert (daemon.root / taken).read_bytes() == b"stored before"
    for name, data in files.items():
        if name != taken:
            assert (daemon.root / name).read_bytes() == data


@pytest.mark.slow
async def test_put_many_never_sends_more_than_the_protocol_allows(daemon, tmp_path: Path) -> None:
    files = []
    for i in range(20):  # 20 x 256 KiB = 5 MiB, over MAX_MANY_BYTES
        path = tmp_path / f"q{i:02d}.bin"
        path.write_bytes(os.urandom(256 << 10))
        files.append((path, f"q/{path.name}"))
    async with Client(ClientConfig(daemon.endpoint, many_bytes=64 << 20)) as client:
        results = await client.put_many(files)
    assert all(isinstance(r, Result) for r in results), results
    for path, name in files:
        assert (daemon.root / name).read_bytes() == path.read_bytes()
