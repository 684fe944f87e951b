"""Load: many clients at once, many small files, and SIGTERM under load.

Every file is verified (its digest on the daemon's disk, in the catalog and
as the client computed it), and the daemon's peak resident memory (VmHWM)
is printed and must stay under a fixed ceiling: bounded by transfers x
credit window, not by file count or size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time

import blake3
import pytest

from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.client.tree import send_paths
from zfile.errors import ZfileError

from ..conftest import start_daemon
from ..rawpeer import MiB, all_logs, digest_of, partials, peak_rss_mib, restart

pytestmark = pytest.mark.slow

RSS_CEILING_MIB = 400
RESUMED = re.compile(r"resuming upload of '([^']+)' at byte (\d+) of (\d+)")


def distinct_files(directory, count: int, size: int) -> dict[str, bytes]:
    """``count`` files of ``size`` bytes, each different; name -> digest."""
    directory.mkdir(parents=True, exist_ok=True)
    base = bytearray(os.urandom(size))
    digests = {}
    for i in range(count):
        base[:16] = i.to_bytes(16, "big")
        name = f"f{i:05d}.bin"
        (directory / name).write_bytes(base)
        digests[name] = blake3.blake3(base).digest()
    return digests


async def test_100_concurrent_clients_10_mib_each(tmp_path, capsys):
    src = tmp_path / "src"
    want = distinct_files(src, 100, 10 * MiB)
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:

        async def one(name: str):
            async with Client(ClientConfig(d.endpoint, timeout=60)) as client:
                return await client.put(src / name, f"load/{name}")

        results = await asyncio.gather(*(one(name) for name in want))
        assert {r.name: r.digest for r in results} == {f"load/{n}": dg for n, dg in want.items()}
        async with Client(d.endpoint) as client:
            listed = {e.name: (e.size, e.digest) async for e in client.list("load/")}
        assert listed == {f"load/{n}": (10 * MiB, dg) for n, dg in want.items()}
        for name, dg in want.items():
            assert digest_of(d.root / "load" / name) == dg, name
        peak = peak_rss_mib(d.proc.pid)
    finally:
        assert d.stop() == 0, d.log_text()
    with capsys.disabled():
        print(f"\n100 clients x 10 MiB: 100 files verified, 0 lost; daemon peak RSS (VmHWM) {peak:.1f} MiB")
    assert peak < RSS_CEILING_MIB


async def test_one_client_10000_files_of_4_kib(tmp_path, capsys):
    src = tmp_path / "many"
    want = {}
    for i in range(10_000):
        data = os.urandom(4096)
        path = src / f"d{i % 50:02d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        want[f"many/d{i % 50:02d}/f{i:05d}.bin"] = blake3.blake3(data).digest()
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:
        async with Client(ClientConfig(d.endpoint, timeout=60)) as client:
            outcomes = await send_paths(client, [src])
            assert [o.error for o in outcomes if o.error is not None] == []
            assert {o.name: o.result.digest for o in outcomes} == want
            listed = {e.name: e.digest async for e in client.list("many/")}
        assert listed == want
        for name, dg in want.items():
            assert blake3.blake3((d.root / name).read_bytes()).digest() == dg, name
        peak = peak_rss_mib(d.proc.pid)
    finally:
        assert d.stop() == 0, d.log_text()
    with capsys.disabled():
        print(f"\n1 client x 10,000 files of 4 KiB: 10000 verified, 0 lost; daemon peak RSS (VmHWM) {peak:.1f} MiB")
    assert peak < RSS_CEILING_MIB


async def test_sigterm_during_20_transfers_then_resume(tmp_path):
    """SIGTERM with 20 uploads running and a 1 s grace period: the daemon
    exits 0 on its own, suspending what did not finish; on the next run every
    one of them resumes from its partial and completes verified."""
    src = tmp_path / "src"
    want = distinct_files(src, 20, 16 * MiB)
    root, logs = tmp_path / "store", tmp_path / "logs"
    d = restart(root, logs, "--grace-period", "1")
    async with Client(d.endpoint) as client:
        # The clients read slowly (about 50 MiB/s for all 20), so none is done in time.
        tasks = [asyncio.create_task(client.put(src / n, n, progress=lambda _: time.sleep(0.02))) for n in sorted(want)]
        deadline = time.monotonic() + 60
        while not (len(partials(root)) == 20 and all(partials(root).values())):
            assert time.monotonic() < deadline and not any(t.done() for t in tasks), "uploads did not all start"
            await asyncio.sleep(0.01)
        d.proc.send_signal(signal.SIGTERM)
        while d.proc.poll() is None:  # the loop must run: the clients share it
            await asyncio.sleep(0.05)
        assert d.proc.returncode == 0
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ZfileError):
                await task
    text = all_logs(logs)
    assert re.search(r"grace period over: suspending \d+ transfer\(s\)", text), text
    suspended = text.count("result=suspended")
    assert suspended == 20 and not (set(os.listdir(root)) & set(want))

    d = restart(root, logs)
    try:
        async with Client(d.endpoint) as client:
            results = await asyncio.gather(*(client.put(src / n, n) for n in sorted(want)))
        assert {r.name: r.digest for r in results} == want
        for name, dg in want.items():
            assert digest_of(root / name) == dg
        resumed = {m[0] for m in RESUMED.findall(all_logs(logs)) if int(m[1]) > 0}
        assert resumed == set(want)
        assert partials(root) == {}
    finally:
        assert d.stop() == 0
