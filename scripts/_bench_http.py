"""The ``http`` case of ``scripts/bench``: zfile's HTTP front against Debian's
nginx and ``python -m http.server``, on 127.0.0.1.

- ``http get``: ``curl -o /dev/null`` of the large file from each server (the
  same file on the same disk; nginx with ``sendfile on``); every tool's copy is
  fetched once more outside the timed runs and compared by BLAKE3;
- ``http put``: ``curl -T`` of the large file into zfile's HTTP front against
  ``zfile send`` of it over ZeroMQ, each into a fresh store;
- ``http concurrent``: 100 GETs of 10 MiB [2 MiB] files at once (different
  files), each verified by BLAKE3, from zfile and from nginx, both serving
  the files zfile stored, each checked against the source beforehand
  (untimed), which reads it into the page cache.

Servers run under ``/usr/bin/time -v`` like the rest of the bench (peak RSS);
the files zfile serves are stored beforehand by a daemon of their own.
Run as a script (``_http_clients BASE COUNT DIGEST``) it is the concurrent client.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import _benchlib as core
import blake3

NGINX = "/usr/sbin/nginx"
CURL = "curl"


def _nginx_conf(work: Path, root: Path, port: int) -> Path:
    tmp = work / "nginx-tmp"
    tmp.mkdir(exist_ok=True)
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temps = "\n".join(f"    {kind}_temp_path {tmp / kind};" for kind in kinds)
    conf = work / "nginx.conf"
    conf.write_text(
        f"""daemon off;
user root;
worker_processes auto;
pid {work / "nginx.pid"};
error_log {work / "nginx-error.log"};
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
{temps}
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""
    )
    return conf


def _nginx(b, root: Path):
    port = core.free_port()
    conf = _nginx_conf(b.work, root, port)
    proc = b.serve("nginx", [NGINX, "-c", str(conf), "-p", str(b.work)], lambda p: core.listening(port))
    return proc, f"http://127.0.0.1:{port}"


def _http_server(b, root: Path):
    port = core.free_port()
    cmd = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(port)]
    proc = b.serve("http.server", cmd, lambda p: core.listening(port))
    return proc, f"http://127.0.0.1:{port}"


def _zfile(b, root: Path):
    port = core.free_port()
    proc, endpoint = b.zfile_daemon(root, "--http", f"127.0.0.1:{port}")
    return proc, f"http://127.0.0.1:{port}/files", endpoint


def _preload(b, root: Path, src: Path) -> None:
    """Store ``src`` (a file or a directory) under ``root`` with ``zfile send``
    to a daemon of its own, so that what the upload cost is not counted in
    the peak RSS of the daemon measured next."""
    proc, endpoint = b.zfile_daemon(root)
    try:
        b.client("zfile-send", [core.ZFILE, "send", str(src), "--to", endpoint, "--quiet"])
    finally:
        b.retire(proc)


def _verify(url: str, src: Path, scratch: Path, what: str) -> None:
    subprocess.run([CURL, "-sSf", "-o", str(scratch), url], check=True, timeout=3600)
    core.check_copy(src, scratch, what)
    scratch.unlink()


def case_http(b, src: Path, runs: int, small: Path, clients: int, results: list) -> None:
    """Every ``http ...`` run appended to ``results`` (module docstring)."""
    size = src.stat().st_size
    plain = b.work / "http-plain"  # what nginx and http.server serve
    shutil.rmtree(plain, ignore_errors=True)
    plain.mkdir()
    (plain / src.name).hardlink_to(src)
    zroot = b.work / "http-zstore"
    shutil.rmtree(zroot, ignore_errors=True)
    _preload(b, zroot, src)
    zfile, zbase, _ = _zfile(b, zroot)
    nginx, nbase = _nginx(b, plain)
    pyserver, pbase = _http_server(b, plain)
    servers = {"zfile": (zfile, zbase), "nginx": (nginx, nbase), "http.server": (pyserver, pbase)}
    try:
        for tool, (_, base) in servers.items():
            _verify(f"{base}/{src.name}", src, b.work / "http-verify.bin", f"http get ({tool})")
        walls: dict[str, list[tuple[float, object]]] = {t: [] for t in servers}
        for i in range(runs):
            for tool, (_, base) in servers.items():
                core.sync()
                wall, cu = b.client(f"curl-{tool}", [CURL, "-sSf", "-o", "/dev/null", f"{base}/{src.name}"])
                walls[tool].append((wall, cu))
                print(f"  http get run {i + 1}/{runs} {tool:11s} {size / wall / 1e6:7.1f} MB/s", file=sys.stderr)
    finally:
        usage = {tool: b.retire(proc) for tool, (proc, _) in servers.items()}
    for tool, rs in walls.items():
        results += [core.Run(tool, "http get", size, 1, wall, cu, usage[tool]) for wall, cu in rs]
    shutil.rmtree(zroot, ignore_errors=True)

    for i in range(runs):
        results.append(b.run_zfile("http put", src, size, 1))
        zfile, zbase, _ = _zfile(b, zroot)
        try:
            core.sync()
            wall, cu = b.client("curl-put", [CURL, "-sSf", "-o", "/dev/null", "-T", str(src), f"{zbase}/{src.name}"])
        finally:
            su = b.retire(zfile)
        core.check_copy(src, zroot / src.name, "http put")
        shutil.rmtree(zroot, ignore_errors=True)
        results.append(core.Run("curl -T", "http put", size, 1, wall, cu, su))
        print(f"  http put run {i + 1}/{runs} curl -T {size / wall / 1e6:7.1f} MB/s", file=sys.stderr)

    many = b.work / "http-many"
    shutil.rmtree(many, ignore_errors=True)
    many.mkdir()
    for k in range(clients):
        (many / f"c{k:03d}.bin").hardlink_to(small)
    digest = core.digest_of(small)
    total = small.stat().st_size * clients
    timed: dict[str, tuple[float, object]] = {}
    _preload(b, zroot, many)
    # nginx serves the very files zfile stored, and both find them in the page
    # cache: a file just written with O_DIRECT is read from the disk the first
    # time, at about half the speed of a later read (both servers alike), which
    # would be measured instead of the servers.  Checking each stored copy
    # against the source reads it once.
    for k in range(clients):
        core.check_copy(small, zroot / many.name / f"c{k:03d}.bin", "http concurrent")
    zfile, zbase, _ = _zfile(b, zroot)
    nginx, nbase = _nginx(b, zroot)
    try:
        for tool, base in (("zfile", zbase), ("nginx", nbase)):
            cmd = [sys.executable, __file__, "_http_clients", f"{base}/{many.name}", str(clients), digest]
            wall, cu = b.client(f"{tool}-concurrent", cmd)
            timed[tool] = (wall, cu)
            print(f"  http concurrent {tool:5s} {clients} GETs {total / wall / 1e6:7.1f} MB/s", file=sys.stderr)
    finally:
        usage = {"zfile": b.retire(zfile), "nginx": b.retire(nginx)}
    for tool, (wall, cu) in timed.items():
        results.append(core.Run(tool, "http concurrent", total, clients, wall, cu, usage[tool]))
    shutil.rmtree(zroot, ignore_errors=True)
    shutil.rmtree(many, ignore_errors=True)
    shutil.rmtree(plain, ignore_errors=True)


def goals(summary: dict) -> list[str]:
    """The issue's goals for the http case, one line each, from ``_bench.summarize``."""
    lines = []
    get, put, conc = (summary.get(k, {}) for k in ("http get", "http put", "http concurrent"))
    if {"zfile", "nginx", "http.server"} <= get.keys():
        z = get["zfile"]["mbps"]
        lines.append(f"http get: zfile MB/s ÷ nginx = {z / get['nginx']['mbps']:.2f} (goal ≥ 0.80); "
                     f"÷ http.server = {z / get['http.server']['mbps']:.2f} (goal ≥ 3.00)")  # fmt: skip
    if {"zfile", "curl -T"} <= put.keys():
        lines.append(f"http put: curl -T MB/s ÷ zfile send = {put['curl -T']['mbps'] / put['zfile']['mbps']:.2f} "
                     "(goal ≥ 0.90)")  # fmt: skip
    if {"zfile", "nginx"} <= conc.keys():
        lines.append(f"http concurrent: all verified; zfile aggregate ÷ nginx = "
                     f"{conc['zfile']['mbps'] / conc['nginx']['mbps']:.2f} (goal ≥ 0.80), "
                     f"daemon peak RSS {conc['zfile']['server_rss_mib']:.0f} MiB (goal ≤ 128)")  # fmt: skip
    return lines


async def _clients(base: str, count: int, digest: str) -> None:
    """``count`` GETs at once of ``base/c000.bin``...; each body's BLAKE3 must be ``digest``."""
    import aiohttp

    async def one(session: aiohttp.ClientSession, k: int) -> str:
        hasher = blake3.blake3()
        async with session.get(f"{base}/c{k:03d}.bin") as r:
            r.raise_for_status()
            async for chunk in r.content.iter_chunked(1 << 20):
                hasher.update(chunk)
        return hasher.hexdigest()

    limit = aiohttp.TCPConnector(limit=count)
    async with aiohttp.ClientSession(connector=limit, timeout=aiohttp.ClientTimeout(total=3600)) as session:
        got = await asyncio.gather(*(one(session, k) for k in range(count)))
    bad = sum(d != digest for d in got)
    if bad:
        raise SystemExit(f"http concurrent: {bad} of {count} GETs not verified")


if __name__ == "__main__" and sys.argv[1:2] == ["_http_clients"]:
    asyncio.run(_clients(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
