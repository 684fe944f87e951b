"""The benchmark's single-machine cases: large, small, get, concurrent,
memory and encrypted (the module docstring of ``_bench`` says what each
runs).  Each appends its :class:`_benchlib.Run` records to ``results``; runs
alternate between tools (A B C A B C ...).

Run as a script (``_clients ENDPOINT SRC COUNT``) it is the concurrent case's
client process.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

from _bench_fs import small_fs
from _bench_tools import Bench, Tool
from _benchlib import ROOT, SMALL_ONE, ZFILE, MiB, Run, digest_of, make_small, sync


def _alternate(b: Bench, case: str, tools: list[Tool], src: Path, nbytes: int, nfiles: int, runs: int,
               results: list[Run], per_file: bool) -> None:  # fmt: skip
    for i in range(runs):
        for tool in tools:
            r = tool(case, src, nbytes, nfiles)
            results.append(r)
            rate = f"{nfiles / r.wall:9,.0f} files/s" if per_file else f"{nbytes / r.wall / 1e6:7.1f} MB/s"
            print(f"  {case} run {i + 1}/{runs} {r.tool:20s} {rate}", file=sys.stderr)


def case_large(b: Bench, src: Path, runs: int, results: list[Run], page_cache_row: bool = True) -> None:
    """One large file to a new file on the real disk; ``dd oflag=direct
    conv=fsync`` of the same bytes is the disk's durable write rate in the
    same run, and (with ``page_cache_row``) ``dd conv=fsync`` what one write
    through the page cache and one fsync get."""
    tools = [*b.zfile_tools(), b.run_rsync, b.run_rsync_fsync, b.run_scp, b.run_socat, b.run_disk_direct]
    if page_cache_row:
        tools.append(b.run_disk_buffered)
    _alternate(b, "large", tools, src, src.stat().st_size, 1, runs, results, per_file=False)


def case_small(b: Bench, src: Path, runs: int, results: list[Run], fresh_fs: bool = True) -> str:
    """Many small files into a fresh directory on a fresh file system
    (``_bench_fs.small_fs``), after one run of each tool with a single file
    (case :data:`SMALL_ONE`); returns a note saying where they went."""
    files = [p for p in src.iterdir() if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    tools = [*b.zfile_tools(), b.run_rsync, b.run_rsync_fsync, b.run_scp]
    with small_fs(b.work, (len(files) * runs + 1) * len(tools), size // max(len(files), 1), fresh_fs) as place:
        b.dest = place.path
        # Every run creates its files where none were just deleted; on a fresh
        # file system the set-aside runs go with the image.
        b.spent = place.path / "spent"
        try:
            # What each tool costs for one file: its start-up and connection, which
            # the CPU per file subtracts (cpu_per_file in _bench_verdict).
            one = make_small(src.parent / "small-1", 1, size // max(len(files), 1))
            _alternate(b, SMALL_ONE, tools, one, size // max(len(files), 1), 1, 1, results, per_file=True)
            _alternate(b, "small", tools, src, size, len(files), runs, results, per_file=True)
        finally:
            b.cleanup()  # nothing may hold the file system when it is unmounted
            if not place.fresh:
                shutil.rmtree(b.spent, ignore_errors=True)
            b.spent = None
            b.dest = b.work
    return f"small: destinations on {place.what}"


def case_get(b: Bench, src: Path, runs: int, results: list[Run]) -> None:
    """``zfile get`` of a stored large file against ``rsync --fsync`` and
    ``scp`` pulling the same file, each into a new directory on the real disk."""
    size = src.stat().st_size
    b.store_for_get(src)
    try:
        tools = [b.run_zfile_get, b.run_rsync_pull_fsync, b.run_scp_pull]
        _alternate(b, "get", tools, src, size, 1, runs, results, per_file=False)
    finally:
        if b.get_store is not None:
            shutil.rmtree(b.get_store, ignore_errors=True)
        b.get_store = None


def case_concurrent(b: Bench, src: Path, clients: int, results: list[Run]) -> None:
    size = src.stat().st_size
    root = b.work / "zstore"
    shutil.rmtree(root, ignore_errors=True)
    daemon, endpoint = b.zfile_daemon(root)
    cmd = [sys.executable, __file__, "_clients", endpoint, str(src), str(clients)]
    wall, cu, su, before = b.timed_pair("zfile-concurrent", daemon, cmd)
    for i in range(clients):
        if (root / f"c{i:03d}-{src.name}").stat().st_size != size:
            raise RuntimeError(f"concurrent: client {i}'s file has the wrong size")
    shutil.rmtree(root, ignore_errors=True)
    results.append(Run("zfile", "concurrent", size * clients, clients, wall, cu, su, before))
    print(f"  concurrent {clients} x {size // MiB} MiB {size * clients / wall / 1e6:7.1f} MB/s", file=sys.stderr)


async def _clients(endpoint: str, src: str, count: int) -> None:
    """``count`` clients, each on its own connection, each sending ``src`` under
    its own name at once; then every stored digest is checked against the source's."""
    sys.path.insert(0, str(ROOT))
    from zfile.client.client import Client
    from zfile.client.config import ClientConfig

    want = bytes.fromhex(digest_of(Path(src)))

    async def one(i: int) -> bytes:
        async with Client(ClientConfig(endpoint, timeout=120)) as c:
            return (await c.put(src, f"c{i:03d}-{Path(src).name}")).digest

    digests = await asyncio.gather(*(one(i) for i in range(count)))
    async with Client(endpoint) as c:
        stored = {e.name: e.digest async for e in c.list("c")}
    bad = [i for i, d in enumerate(digests) if d != want]
    bad += [i for i in range(count) if stored.get(f"c{i:03d}-{Path(src).name}") != want]
    if bad:
        raise SystemExit(f"concurrent: {len(bad)} of {count} transfers not verified")


def case_memory(b: Bench, sizes: list[tuple[str, Path]], results: list[Run]) -> None:
    for label, src in sizes:
        size = src.stat().st_size
        root = b.work / "zstore"
        back = b.work / "back"
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(back, ignore_errors=True)
        daemon, endpoint = b.zfile_daemon(root)
        try:
            sync()
            wall_put, cu_put = b.client("zfile-send", [ZFILE, "send", str(src), "--to", endpoint, "--quiet"])
            sync()
            get = [ZFILE, "get", src.name, "--from", endpoint, "-o", str(back), "--quiet"]
            wall_get, cu_get = b.client("zfile-get", get)
        finally:
            su = b.retire(daemon)
        if (back / src.name).stat().st_size != size:
            raise RuntimeError(f"memory: {label} came back with the wrong size")
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(back, ignore_errors=True)
        results.append(Run("zfile send", f"memory {label}", size, 1, wall_put, cu_put, su))
        results.append(Run("zfile get", f"memory {label}", size, 1, wall_get, cu_get, su))
        print(f"  memory {label}: daemon {su.rss_kib // 1024} MiB, send {cu_put.rss_kib // 1024} MiB, "
              f"get {cu_get.rss_kib // 1024} MiB", file=sys.stderr)  # fmt: skip


def curve_supported() -> bool:
    try:
        return subprocess.run([ZFILE, "keygen", "--help"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def case_encrypted(b: Bench, src: Path, runs: int, results: list[Run]) -> str:
    """zfile with CURVE against scp (aes128-gcm); returns a note when skipped."""
    if not curve_supported():
        return "encrypted: skipped: this zfile has no CURVE support yet (`zfile keygen --help` fails)"
    keys = b.work / "keys"
    shutil.rmtree(keys, ignore_errors=True)
    (keys / "allowed").mkdir(parents=True)
    try:
        for name in ("server", "client"):
            cmd = [ZFILE, "keygen", "--out", str(keys), "--name", name]
            subprocess.run(cmd, check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        return f"encrypted: skipped: `zfile keygen` failed ({exc.stderr.decode(errors='replace').strip()})"
    shutil.copy(keys / "client.key", keys / "allowed" / "client.key")
    serve = subprocess.run([ZFILE, "serve", "--help"], capture_output=True, text=True).stdout
    send = subprocess.run([ZFILE, "send", "--help"], capture_output=True, text=True).stdout
    if not all(o in serve for o in ("--secret-key", "--authorized-keys")) or "--server-key" not in send:
        return "encrypted: skipped: `zfile serve` / `zfile send` lack the CURVE options this benchmark uses"
    daemon_extra = ["--secret-key", str(keys / "server.key_secret"), "--authorized-keys", str(keys / "allowed")]
    client_extra = ["--server-key", str(keys / "server.key"), "--client-key", str(keys / "client.key_secret")]
    size = src.stat().st_size
    for i in range(runs):
        r = b.run_zfile("encrypted", src, size, 1, daemon_extra=daemon_extra, client_extra=client_extra)
        r.tool = "zfile+CURVE"
        results.append(r)
        results.append(b.run_scp("encrypted", src, size, 1))
        print(f"  encrypted run {i + 1}/{runs} zfile+CURVE {size / r.wall / 1e6:7.1f} MB/s, "
              f"scp {size / results[-1].wall / 1e6:7.1f} MB/s", file=sys.stderr)  # fmt: skip
    return ""


if __name__ == "__main__" and sys.argv[1:2] == ["_clients"]:
    asyncio.run(_clients(sys.argv[2], sys.argv[3], int(sys.argv[4])))
