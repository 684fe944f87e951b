"""Crash safety: kill -9 of the daemon or of a client, then restart.

After every crash: no partial file under a final name, the catalog agrees
with the files on disk, and an interrupted upload resumes (the daemon logs
"resuming upload of NAME at byte N") and completes verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import blake3
import pytest

from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.errors import ErrorCode, RemoteError, ZfileError
from zfile.store import LocalStore

from ..conftest import Daemon, free_port
from ..rawpeer import MiB, all_logs, digest_of, make_file, partials, restart

RESUMED = re.compile(r"resuming upload of '([^']+)' at byte (\d+) of (\d+)")


def stored_files(root: Path) -> dict[str, int]:
    """Regular files under ``root`` outside its private directory: name -> size."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != ".zfile"
    }


async def catalog_agrees(endpoint: str, root: Path) -> dict[str, bytes]:
    """Assert that the daemon lists exactly the files on disk, each with its
    size and digest; return name -> digest."""
    async with Client(endpoint) as client:
        entries = [e async for e in client.list("")]
    on_disk = stored_files(root)
    assert {e.name: e.size for e in entries} == on_disk
    for e in entries:
        assert digest_of(root / e.name) == e.digest, e.name
    return {e.name: e.digest for e in entries}


async def wait_for_partial(root: Path, at_least: int, task: asyncio.Task) -> int:
    while not task.done():
        held = max(partials(root).values(), default=0)
        if held >= at_least:
            return held
        await asyncio.sleep(0.002)
    raise AssertionError(f"the upload finished before its partial held {at_least} bytes: {task!r}")


def kill9(daemon: Daemon) -> None:
    daemon.proc.kill()
    daemon.proc.wait(timeout=10)


@pytest.mark.slow
async def test_kill9_daemon_mid_upload_resumes(tmp_path, capsys):
    """Kill -9 the daemon at random byte offsets of one upload, restarting it
    on the same root each time; the upload resumes every time and completes."""
    cycles = 8
    root, logs = tmp_path / "store", tmp_path / "logs"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    src = make_file(tmp_path / "src.bin", 96 * MiB)
    kept = make_file(tmp_path / "kept.bin", 5 * MiB)
    rng = random.Random()
    seed = rng.randrange(1 << 32)
    rng.seed(seed)
    targets = sorted(rng.sample(range(MiB, 80 * MiB), cycles))

    d = restart(root, logs, endpoint=endpoint)
    async with Client(endpoint) as client:
        await client.put(kept, "kept.bin")  # committed before any crash: must survive them all

    for i, target in enumerate(targets):
        if i:
            d = restart(root, logs, endpoint=endpoint)
        held = max(partials(root).values(), default=0)
        # The default timeout: a shorter one could end the upload on a loaded
        # machine before the kill; the kill's cancel ends it anyway.
        async with Client(endpoint) as client:
            task = asyncio.create_task(client.put(src, "big.bin", progress=lambda n: time.sleep(0.008)))
            # at the random offset, and at least a chunk past where this run resumed
            await wait_for_partial(root, max(target, held + MiB + 1), task)
            kill9(d)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ZfileError):
                await task
        # after the crash, before any restart: nothing under the final name
        assert not (root / "big.bin").exists()
        assert stored_files(root) == {"kept.bin": 5 * MiB}

    d = restart(root, logs, endpoint=endpoint)
    try:
        # the catalog agrees with the disk right after the restart
        assert await catalog_agrees(endpoint, root) == {"kept.bin": digest_of(kept)}
        async with Client(endpoint) as client:
            done = await client.put(src, "big.bin")
        assert done.digest == digest_of(src) == digest_of(root / "big.bin")
        assert await catalog_agrees(endpoint, root) == {"kept.bin": digest_of(kept), "big.bin": digest_of(src)}
        assert partials(root) == {}
    finally:
        assert d.stop() == 0
    resumed = [int(m[1]) for m in RESUMED.findall(all_logs(logs)) if m[0] == "big.bin"]
    with capsys.disabled():
        print(f"\ncrash/restart cycles run: {cycles} (seed {seed}); resumed at {resumed}; files lost: 0")
    # every run after the first resumed from what the previous one left
    assert len(resumed) == cycles and all(r > 0 for r in resumed), resumed
    assert resumed == sorted(resumed)


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    import blake3
    from zfile.store.catalog import Catalog
    from zfile.store.layout import Layout
    from zfile.store.local import LocalStore, Upload
    from zfile.store import unnamed
    from zfile.store.wholes import Staged

    root, src, point, how = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    if how == "inline-named":  # past the budget of unnamed files: a named partial
        unnamed.DESCRIPTORS = unnamed.Budget(0)
    die = lambda *a, **k: os._exit(9)
    if point == "before-rename":
        Upload.install = Staged.publish_to = die
    elif point == "after-link":
        def half_install(self, final, *args, **kwargs):
            final.parent.mkdir(parents=True, exist_ok=True)
            os.link(Layout(root).part_path(self.transfer), final)
            os._exit(9)
        def half_publish(self, name, check_path):
            if self.file_fd >= 0:  # an unnamed file: its link is the whole step
                os.link(f"/proc/self/fd/{self.file_fd}", self.base, dst_dir_fd=self.dir_fd, follow_symlinks=True)
            else:
                os.link(self.part, self.base, src_dir_fd=self.tmp_fd, dst_dir_fd=self.dir_fd)
            os._exit(9)
        Upload.install = half_install
        Staged.publish_to = half_publish

    async def main():
        store = LocalStore(root)
        await store.open()
        if point == "after-rename":
            Catalog.put = Catalog.put_many = die
        st = src.stat()
        data = src.read_bytes()
        meta = dict(name="f.bin", size=st.st_size, mtime_ns=st.st_mtime_ns, mode=0o644, algo="blake3",
                    clobber=point != "after-link", peer="t")
        if how.startswith("inline"):
            await store.put_inline(**meta, data=data, digest=blake3.blake3(data).digest())
        else:
            upload = await store.begin_upload(**meta)
            await upload.write(0, data)
            await upload.commit(blake3.blake3(data).digest())
        print("committed without crashing")

    asyncio.run(main())
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before-rename", "after-rename", "after-link"])
async def test_kill9_at_commit(tmp_path, point):
    """A crash inside Upload.commit: before the rename the file is not
    published and its upload resumes complete; after the rename (or a
    no-clobber link) but before the catalog row, the next start records it."""
    root, logs = tmp_path / "store", tmp_path / "logs"
    src = make_file(tmp_path / "f.bin", 3 * MiB + 11)
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(root), str(src), point, "streamed"], capture_output=True
    )
    assert proc.returncode == 9, proc.stderr.decode()

    d = restart(root, logs)
    try:
        if point == "before-rename":
            assert not (root / "f.bin").exists()
            assert await catalog_agrees(d.endpoint, root) == {}
            async with Client(d.endpoint) as client:
                done = await client.put(src, "f.bin")
            assert RESUMED.search(all_logs(logs)).groups() == (
                "f.bin",
                str(src.stat().st_size),
                str(src.stat().st_size),
            )
            assert done.digest == digest_of(src)
        else:
            assert "commit was cut short" in all_logs(logs)
        assert await catalog_agrees(d.endpoint, root) == {"f.bin": digest_of(src)}
        assert partials(root) == {}
        async with Client(d.endpoint) as client:
            got = await client.get("f.bin", tmp_path / "back.bin")
        assert got.path.read_bytes() == src.read_bytes()
    finally:
        assert d.stop() == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "how"),
    [
        ("before-rename", "inline"),
        ("after-rename", "inline"),
        ("after-link", "inline"),
        ("after-link", "inline-named"),
    ],
)
async def test_kill9_at_inline_commit(tmp_path, point, how):
    """A crash inside an inline PUT's commit, whose intent is a catalog row
    rather than a state file: before the rename (or link) the file is not
    published and nothing of it is left; after the rename (or a link: of
    the unnamed file, or of a named partial that must not clobber) but
    before the catalog row, the next start records it."""
    root, logs = tmp_path / "store", tmp_path / "logs"
    src = make_file(tmp_path / "f.bin", 4096 + 7)
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(root), str(src), point, how], capture_output=True)
    assert proc.returncode == 9, proc.stderr.decode()

    d = restart(root, logs)
    try:
        if point == "before-rename":
            assert not (root / "f.bin").exists()
            assert await catalog_agrees(d.endpoint, root) == {}
            assert partials(root) == {}
            async with Client(d.endpoint) as client:
                done = await client.put(src, "f.bin")
            assert done.digest == digest_of(src)
        else:
            assert "commit was cut short" in all_logs(logs)
        assert await catalog_agrees(d.endpoint, root) == {"f.bin": digest_of(src)}
        assert partials(root) == {}
        async with Client(d.endpoint) as client:
            got = await client.get("f.bin", tmp_path / "back.bin")
        assert got.path.read_bytes() == src.read_bytes()
    finally:
        assert d.stop() == 0


@pytest.mark.slow
async def test_reconcile_missing_and_replaced_files(tmp_path):
    """Rows whose file vanished are dropped; a file replaced behind the
    catalog's back is re-hashed, so downloads verify against what is served."""
    root, logs = tmp_path / "store", tmp_path / "logs"
    d = restart(root, logs)
    files = {n: make_file(tmp_path / n, s) for n, s in [("gone.bin", MiB), ("changed.bin", 2 * MiB), ("same.bin", 10)]}
    async with Client(d.endpoint) as client:
        for name, path in files.items():
            await client.put(path, f"dir/{name}")
        await client.put(files["same.bin"], "moved/x.bin")
    assert d.stop() == 0
    # A directory swapped for a symbolic link out of the root: its rows can no
    # longer be served, though the file behind the link looks the same.
    (root / "moved").rename(tmp_path / "elsewhere")
    (root / "moved").symlink_to(tmp_path / "elsewhere")

    (root / "dir" / "gone.bin").unlink()
    (root / "dir" / "changed.bin").write_bytes(b"edited by hand" * 1000)
    (root / "dir" / "same.bin").chmod(0o600)  # mode alone is not a replacement

    d = restart(root, logs)
    try:
        digests = await catalog_agrees(d.endpoint, root)
        assert sorted(digests) == ["dir/changed.bin", "dir/same.bin"]
        assert digests["dir/same.bin"] == digest_of(files["same.bin"])
        async with Client(d.endpoint) as client:
            got = await client.get("dir/changed.bin", tmp_path / "back" / "changed.bin")
            assert got.path.read_bytes() == b"edited by hand" * 1000
            with pytest.raises(RemoteError) as info:
                await client.get("dir/gone.bin", tmp_path / "back" / "gone.bin")
            assert info.value.code is ErrorCode.NOT_FOUND
        text = all_logs(logs)
        assert "'dir/gone.bin' is missing from the disk" in text and "'dir/changed.bin' was changed on disk" in text
        # "moved" lost its one file: left alone, not served, and said so.
        assert (
            f"1 entry at the top of {root} holds nothing the catalog lists ('moved'): not served, as the "
            "catalog, not the directory, says what the store holds; send the files, or start with --adopt, "
            "to serve them"
        ) in text
    finally:
        assert d.stop() == 0


async def test_files_the_catalog_does_not_list_are_said_not_served(tmp_path):
    """A tree copied into the root by hand, or a catalog lost: what it holds
    is not served, and the start-up says so."""
    store = LocalStore(tmp_path / "root")
    await store.open()
    await store.put_inline(
        name="kept/a", size=1, mtime_ns=0, mode=0o644, algo="blake3", clobber=True, peer="", data=b"a",
        digest=blake3.blake3(b"a").digest(),
    )  # fmt: skip
    await store.close()
    (tmp_path / "root" / "kept" / "by-hand").write_bytes(b"deeper down: not looked for")
    (tmp_path / "root" / "copied").mkdir()
    (tmp_path / "root" / "copied" / "x").write_bytes(b"x")
    (tmp_path / "root" / "loose.txt").write_bytes(b"y")
    (tmp_path / "root" / "lost+found").mkdir()  # a file system's own, where the root is its top
    os.mkdir(os.path.join(os.fsencode(tmp_path / "root"), b"\xff"))
    store = LocalStore(tmp_path / "root")
    await store.open()
    try:
        assert store.reconciled.unlisted == ("copied", "loose.txt", os.fsdecode(b"\xff"))
        assert [e.name for e in await store.list()] == ["kept/a"]
    finally:
        await store.close()
    (tmp_path / "root" / "catalog-lost").mkdir()
    for lost in (tmp_path / "root" / ".zfile").glob("catalog.db*"):
        lost.unlink()
    store = LocalStore(tmp_path / "root")
    await store.open()
    try:
        assert store.reconciled.unlisted == ("catalog-lost", "copied", "kept", "loose.txt", os.fsdecode(b"\xff"))
    finally:
        await store.close()


CLIENT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    from zfile.client.client import Client

    async def main():
        async with Client(sys.argv[1]) as client:
            await client.put(sys.argv[2], "big.bin", progress=lambda n: time.sleep(0.05))

    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_kill9_client_mid_transfer(tmp_path):
    """The daemon frees a killed client's transfer after --idle-timeout (its
    one slot becomes free again) and keeps the partial, which resumes."""
    root, logs = tmp_path / "store", tmp_path / "logs"
    d = restart(root, logs, "--idle-timeout", "1", "--max-transfers", "1")
    src = make_file(tmp_path / "big.bin", 64 * MiB)
    other = make_file(tmp_path / "other.bin", 2 * MiB)
    client = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, d.endpoint, str(src)])
    try:
        deadline = time.monotonic() + 30
        while max(partials(root).values(), default=0) < 4 * MiB:
            assert time.monotonic() < deadline and client.poll() is None, "the client did not get going"
            await asyncio.sleep(0.01)
        # Asked while the client still sends (it has 60 MiB to go at most
        # 20 MiB/s): asked after the kill, the answer would race the idle timeout.
        async with Client(ClientConfig(d.endpoint, busy_retries=0)) as c:
            with pytest.raises(RemoteError) as info:  # the client's transfer holds the one slot
                await c.put(other, "other.bin")
            assert info.value.code is ErrorCode.BUSY
        client.kill()
        client.wait()
        held = max(partials(root).values())

        async with Client(ClientConfig(d.endpoint, busy_retries=8, busy_backoff=0.1)) as c:
            # the dead client's transfer, held until the idle timeout ends it:
            # then the retry with backoff gets through
            await c.put(other, "other.bin")
            assert "idle for" in d.log_text()
            assert 0 < held <= max(partials(root).values()) < src.stat().st_size  # partial kept
            done = await c.put(src, "big.bin")
        assert done.digest == digest_of(src) == digest_of(root / "big.bin")
        name, offset, size = RESUMED.search(d.log_text()).groups()
        assert name == "big.bin" and int(offset) >= held and int(size) == src.stat().st_size
        assert await catalog_agrees(d.endpoint, root) == {"big.bin": digest_of(src), "other.bin": digest_of(other)}
    finally:
        if client.poll() is None:
            client.kill()
        assert d.stop() == 0, d.log_text()


@pytest.mark.slow
async def test_kill9_while_put_many_batches_are_in_flight(tmp_path):
    """kill -9 of the daemon at a random moment while PUT-MANY batches are
    being written, synced and published: every file acknowledged before the
    kill is there after the restart with its digest, the catalog agrees with
    the disk, no partial is left, and the files not acknowledged can be sent
    again."""
    root, logs, src = tmp_path / "store", tmp_path / "logs", tmp_path / "src"
    names = [f"d{k % 7}/f{k:04d}" for k in range(1200)]
    for name in names:
        make_file(src / name, 1000 + len(name) * 13)
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    d = restart(root, logs)
    acked: dict[str, bytes] = {}

    async def send_batches() -> None:
        async with Client(ClientConfig(d.endpoint, timeout=5.0)) as client:
            for start in range(0, len(names), 100):
                batch = [(src / n, n) for n in names[start : start + 100]]
                for result in await client.put_many(batch):
                    if not isinstance(result, ZfileError):
                        acked[result.name] = result.digest

    senders = [asyncio.create_task(send_batches()) for _ in range(2)]
    await asyncio.sleep(rng.uniform(0.05, 0.6))
    kill9(d)
    await asyncio.gather(*senders, return_exceptions=True)

    d = restart(root, logs, endpoint=d.endpoint)
    try:
        listed = await catalog_agrees(d.endpoint, root)
        for name, digest in acked.items():
            assert listed.get(name) == digest, (name, seed)
        assert partials(root) == {}
        missing = [n for n in names if n not in listed]
        async with Client(d.endpoint) as client:
            for start in range(0, len(missing), 100):
                results = await client.put_many([(src / n, n) for n in missing[start : start + 100]])
                assert not [r for r in results if isinstance(r, ZfileError)], seed
        listed = await catalog_agrees(d.endpoint, root)
        assert sorted(listed) == sorted(names)
        assert all(listed[n] == digest_of(src / n) for n in names)
    finally:
        assert d.stop() == 0
