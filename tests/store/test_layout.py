"""The store's layout: one process at a time holds a store, a root, or its
catalog, deleted or moved under it is seen to be gone, and a partials'
directory deleted is made again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zfile.errors import StoreError
from zfile.store import LocalStore

from ..conftest import free_port, start_daemon, zfile_cli


async def test_a_store_is_held_by_one_opener_at_a_time(tmp_path: Path) -> None:
    first = LocalStore(tmp_path / "root")
    await first.open()
    try:
        assert (tmp_path / "root" / ".zfile" / "lock").read_text() == f"{os.getpid()}\n"
        second = LocalStore(tmp_path / "root")
        with pytest.raises(StoreError) as info:
            await second.open()
        assert str(info.value) == (
            f"the store at {tmp_path / 'root'} is in use by another zfile daemon (pid {os.getpid()}): "
            "stop it, or give this one a --root of its own"
        )
    finally:
        await first.close()
    await second.open()  # released by the close
    await second.close()


async def test_a_lock_held_before_its_pid_is_written_is_refused_without_one(tmp_path: Path) -> None:
    import fcntl

    lock = tmp_path / "root" / ".zfile" / "lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:  # locked, still empty
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(StoreError) as info:
            await LocalStore(tmp_path / "root").open()
    assert str(info.value) == (
        f"the store at {tmp_path / 'root'} is in use by another zfile daemon: stop it, "
        "or give this one a --root of its own"
    )


async def test_a_store_whose_open_fails_later_lets_go_of_its_lock(tmp_path: Path, monkeypatch) -> None:
    from zfile.store.catalog import Catalog

    async def broken(self: Catalog) -> None:
        raise StoreError("the catalog could not be opened")

    monkeypatch.setattr(Catalog, "open", broken)
    with pytest.raises(StoreError, match="could not be opened"):
        await LocalStore(tmp_path / "root").open()
    monkeypatch.undo()
    store = LocalStore(tmp_path / "root")
    await store.open()
    await store.close()


@pytest.mark.slow
def test_a_second_daemon_on_a_store_in_use_refuses_to_start(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:
        cmd = [sys.executable, "-m", "zfile", "serve", "--root", str(tmp_path / "store")]
        second = subprocess.run(
            [*cmd, "--bind", f"tcp://127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60
        )
        assert second.returncode != 0
        assert f"is in use by another zfile daemon (pid {daemon.proc.pid})" in second.stderr, second.stderr
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    # Stopped, it holds nothing: a new daemon starts on the same store.
    again = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    assert again.stop() == 0


@pytest.mark.parametrize("how", ["deleted", "moved", "replaced"])
async def test_a_root_taken_away_is_lost(tmp_path: Path, how: str) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    await store.open()
    try:
        assert store.lost() is None
        if how == "deleted":
            shutil.rmtree(root)
        else:
            root.rename(tmp_path / "elsewhere")
            if how == "replaced":
                (root / ".zfile").mkdir(parents=True)
                (root / ".zfile" / "lock").write_text("")
        verb = "deleted" if how == "deleted" else "moved or replaced"
        assert store.lost() == f"the store's root {root} was {verb} while the daemon ran" + (
            " (its lock file is gone)" if how == "deleted" else ""
        )
    finally:
        await store.close()
    assert store.lost() is None  # closed: nothing held to judge


@pytest.mark.slow
def test_a_daemon_whose_root_is_deleted_stops_with_status_1(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:
        shutil.rmtree(tmp_path / "store")
        assert daemon.proc.wait(timeout=60) == 1
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
    assert (
        f"ERROR zfile.server: the store's root {tmp_path / 'store'} was deleted while the daemon ran "
        "(its lock file is gone): stopping"
    ) in daemon.log_text()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_catalog_taken_away_is_lost(tmp_path: Path, how: str) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    await store.open()
    catalog = root / ".zfile" / "catalog.db"
    try:
        assert store.lost() is None
        if how == "deleted":
            catalog.unlink()
        else:
            shutil.copyfile(catalog, tmp_path / "copy.db")
            os.replace(tmp_path / "copy.db", catalog)
        verb = "deleted" if how == "deleted" else "replaced by another file"
        assert store.lost() == (
            f"the catalog {catalog} was {verb} while the daemon ran; "
            "the files stay under the root, and a start with --adopt lists them again"
        )
    finally:
        await store.close()
    assert store.lost() is None


async def test_a_catalog_reopened_in_place_is_not_lost(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    await store.open()
    await store.close()
    (root / ".zfile" / "catalog.db").unlink()  # between two opens: a new catalog, not a lost one
    await store.open()
    try:
        assert store.lost() is None
    finally:
        await store.close()


@pytest.mark.slow
def test_a_daemon_whose_catalog_is_deleted_stops_with_status_1(tmp_path: Path) -> None:
    """Before, the daemon went on recording uploads in the deleted file, and
    the next start listed none of them."""
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    catalog = tmp_path / "store" / ".zfile" / "catalog.db"
    try:
        catalog.unlink()
        assert daemon.proc.wait(timeout=60) == 1
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
    assert (
        f"ERROR zfile.server: the catalog {catalog} was deleted while the daemon ran; the files stay under "
        "the root, and a start with --adopt lists them again: stopping"
    ) in daemon.log_text()


async def test_a_partials_directory_deleted_is_made_again(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    await store.open()
    try:
        assert store.mend() is None  # nothing missing
        shutil.rmtree(root / ".zfile" / "tmp")
        assert store.mend() == (
            f"the store's partials directory {root / '.zfile' / 'tmp'} was deleted while the daemon ran: "
            "made it again (uploads that had a partial there fail and start over)"
        )
        assert (root / ".zfile" / "tmp").is_dir()
        assert store.mend() is None
        assert store.lost() is None
    finally:
        await store.close()
    shutil.rmtree(root / ".zfile" / "tmp")
    assert store.mend() is None  # closed: nothing is made
    assert not (root / ".zfile" / "tmp").exists()


@pytest.mark.slow
def test_a_daemon_whose_partials_directory_is_deleted_stores_again(tmp_path: Path) -> None:
    """Before, every upload failed (could not open the store's root or its
    partials' directory) until the daemon was restarted."""
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:
        shutil.rmtree(tmp_path / "store" / ".zfile" / "tmp")
        small, large = tmp_path / "small.txt", tmp_path / "large.bin"
        small.write_bytes(b"small")
        large.write_bytes(os.urandom(3 << 20))  # beyond an inline PUT: a named partial
        line = f"WARNING zfile.server: the store's partials directory {tmp_path / 'store' / '.zfile' / 'tmp'}"
        for _ in range(300):
            if line in daemon.log_text():
                break
            time.sleep(0.1)
        assert line in daemon.log_text()
        zfile_cli("send", str(small), str(large), "--to", daemon.endpoint, "--quiet")
        assert (tmp_path / "store" / "small.txt").read_bytes() == b"small"
        assert (tmp_path / "store" / "large.bin").read_bytes() == large.read_bytes()
    finally:
        assert daemon.stop() == 0, daemon.log_text()


async def test_a_lock_file_deleted_alone_is_lost(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    await store.open()
    try:
        (root / ".zfile" / "lock").unlink()
        assert store.lost() == (
            f"the store's lock file {root / '.zfile' / 'lock'} was deleted while the daemon ran, so that a "
            "second daemon could open the store beside this one"
        )
    finally:
        await store.close()
