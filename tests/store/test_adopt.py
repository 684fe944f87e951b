"""Adoption (``serve --adopt``): files under the root that the catalog does
not list are hashed and recorded, what cannot be is skipped and said, and
nothing on disk is moved or followed."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import blake3
import pytest

from zfile.errors import ConfigError
from zfile.store import LocalStore, make_store

from ..conftest import free_port, start_daemon, zfile_cli


def write(path: Path, data: bytes, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


async def test_files_not_listed_are_recorded_and_the_rest_skipped_with_why(tmp_path: Path, caplog) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    await store.open()
    await store.put_inline(
        name="kept/a", size=1, mtime_ns=5, mode=0o600, algo="blake3", clobber=True, peer="p", data=b"a",
        digest=blake3.blake3(b"a").digest(),
    )  # fmt: skip
    kept = await store.lookup("kept/a")
    await store.close()
    write(root / "copied" / "deep" / "x.bin", b"x" * 70_000, mtime_ns=1_700_000_000_123_456_789)
    (root / "copied" / "deep" / "x.bin").chmod(0o640)
    write(root / "kept" / "b", b"b")
    (root / "link").symlink_to(root / "kept" / "a")
    (root / "dirlink").symlink_to(root / "copied")
    os.mkfifo(root / "fifo")
    write(Path(os.fsdecode(os.path.join(os.fsencode(root), b"bad\xff"))), b"not UTF-8")
    write(root / "lost+found" / "x", b"a file system's own")
    caplog.set_level(logging.INFO, logger="zfile.store")
    store = LocalStore(root, adopt=True)
    await store.open()
    try:
        listed = {e.name: e for e in await store.list()}
        assert sorted(listed) == ["copied/deep/x.bin", "kept/a", "kept/b"]
        x = listed["copied/deep/x.bin"]
        assert (x.size, x.mtime_ns, x.mode, x.algo, x.peer) == (70_000, 1_700_000_000_123_456_789, 0o640, "blake3", "")
        assert x.digest == blake3.blake3(b"x" * 70_000).digest()
        assert listed["kept/a"] == kept  # a listed file is left as it was
        assert store.reconciled.adopted == 2 and store.reconciled.unlisted == ("bad\udcff", "dirlink", "fifo", "link")
        # Served like any upload: read back and verified.
        download = await store.open_download("copied/deep/x.bin")
        try:
            assert await download.read(0, 70_000) == b"x" * 70_000
        finally:
            await download.close()
    finally:
        await store.close()
    text = caplog.text
    for said in (
        "adopt: skipped 'link': a symbolic link (never followed)",
        "adopt: skipped 'dirlink': a symbolic link (never followed)",
        "adopt: skipped 'fifo': not a regular file",
        "adopt: skipped 'bad\\udcff': a name no client could store",
        f"adopt: recorded 2 file(s) (70001 bytes) found under {root} that the catalog did not list; 4 skipped",
    ):
        assert said in text, said
    assert (root / "link").is_symlink() and (root / "fifo").exists()  # nothing on disk moved
    # Once recorded, a second adopting start finds nothing new; it says so, and what the walk cost.
    caplog.clear()
    store = LocalStore(root, adopt=True)
    await store.open()
    try:
        assert store.reconciled.adopted == 0
    finally:
        await store.close()
    assert re.search(
        rf"adopt: nothing to record under {re.escape(str(root))} \(3 file\(s\) looked at in \d+\.\d s, 4 skipped\); "
        "adoption walks the root at every start it is on for: turn it off once a tree is adopted",
        caplog.text,
    ), caplog.text


def test_adopt_is_refused_for_an_object_store() -> None:
    with pytest.raises(ConfigError, match="adopt is for a local store"):
        make_store(
            "s3://bucket/prefix/", max_file_size=1, max_name_bytes=4096, partial_ttl=1.0, adopt=True
        )  # fmt: skip


@pytest.mark.slow
def test_a_lost_catalog_is_rebuilt_by_serve_adopt(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a.txt", b"alpha")
    write(src / "sub" / "b.bin", os.urandom(300_000))
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    zfile_cli("send", "-q", str(src), "--to", daemon.endpoint)
    before = zfile_cli("ls", "-R", "--json", "--from", daemon.endpoint).stdout
    assert daemon.stop() == 0
    for lost in (tmp_path / "store" / ".zfile").glob("catalog.db*"):
        lost.unlink()
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--adopt")
    try:
        after = zfile_cli("ls", "-R", "--from", daemon.endpoint).stdout
        assert [line.split()[-1] for line in after.splitlines()] == ["src/a.txt", "src/sub/b.bin"]
        assert "src/a.txt" in before
        out = tmp_path / "back"
        zfile_cli("get", "src/", "--from", daemon.endpoint, "-o", str(out))
        assert (out / "src" / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
        # The quick check finds them unchanged: same size and mtime as the sources.
        again = zfile_cli("send", str(src), "--to", daemon.endpoint).stdout
        assert "sent 0 file(s)" in again and "2 unchanged" in again, again
    finally:
        assert daemon.stop() == 0
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "zfile",
            "serve",
            "--adopt",
            "--store",
            "s3://b/p/",
            "--bind",
            f"tcp://127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "adopt is for a local store" in proc.stderr, proc.stderr
