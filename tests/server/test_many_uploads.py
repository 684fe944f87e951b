"""One client streaming 100 large uploads at once over one connection: every
file arrives verified, none is left behind as a partial, and the daemon
keeps few of their pages in the page cache once they are committed
(the uploads share one writeback budget and drop their pages after the
fsync)."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from zfile.client.client import Client
from zfile.client.config import ClientConfig

from ..conftest import start_daemon
from ..rawpeer import MiB, digest_of, partials
from .test_load import distinct_files

pytestmark = pytest.mark.slow


async def test_one_client_100_streamed_uploads_at_once_all_verify(tmp_path):
    src = tmp_path / "src"
    want = distinct_files(src, 100, 2 * MiB + 7)  # streamed: over inline_max, odd tail
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--max-transfers-per-peer", "100")
    try:
        async with Client(ClientConfig(d.endpoint, timeout=120)) as client:
            results = await asyncio.gather(*(client.put(src / name, f"many/{name}") for name in want))
            listed = {e.name: e.digest async for e in client.list("many/")}
        assert {r.name: r.digest for r in results} == {f"many/{n}": dg for n, dg in want.items()}
        assert listed == {f"many/{n}": dg for n, dg in want.items()}
        stored = [d.root / "many" / name for name in want]
        for path, dg in zip(stored, want.values(), strict=True):
            assert digest_of(path) == dg, path
        assert partials(d.root) == {}
    finally:
        assert d.stop() == 0, d.log_text()
    log = d.log_text()
    assert log.count("result=ok") == 100, log


def test_committed_uploads_leave_little_in_the_page_cache(tmp_path):
    """fincore(1) counts the stored files' cached pages after 20 uploads at once."""
    src = tmp_path / "src"
    want = distinct_files(src, 20, 3 * MiB)
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:

        async def send() -> None:
            async with Client(ClientConfig(d.endpoint, timeout=120)) as client:
                await asyncio.gather(*(client.put(src / name, f"pc/{name}") for name in want))

        asyncio.run(send())
        paths = [str(d.root / "pc" / name) for name in want]
        try:
            out = subprocess.run(["fincore", "-b", "-n", "-o", "RES", *paths], capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("fincore is not installed (Debian: util-linux-extra)")
        cached = sum(int(line) for line in out.stdout.split())
    finally:
        assert d.stop() == 0, d.log_text()
    # 60 MiB were written; without the drop after fsync most of it stays cached.
    assert cached < 8 * MiB, f"{cached / MiB:.1f} MiB of 60 still cached"
