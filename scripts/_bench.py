"""The benchmark behind ``scripts/bench``: zfile against rsync, scp and socat.

Every server is started for one run under
``/usr/bin/time -v`` (peak RSS and CPU seconds of each side), stopped after
it, and its destination deleted; runs alternate between tools (A B C D A B C D
...).  Nothing is tuned against a guarantee: zfile fsyncs and verifies every
file as in production.  After every run the destination is compared with the
source (size, and BLAKE3 for the large case) outside the timed interval.

Cases (``--quick`` sizes in brackets):

- large: one 1 GiB [256 MiB] random file to a new destination file:
  ``zfile send``, ``rsync -W`` to an ``rsync --daemon`` module, ``scp`` to an
  sshd on a high port (aes128-gcm), and ``socat -b 262144`` (the raw pipe);
- small: 10,000 [2,000] files of 4 KiB into a fresh directory: ``zfile send
  DIR``, ``rsync -a -W``, ``scp -r``;
- concurrent: 100 clients x 10 MiB [2 MiB] at once against one daemon;
- memory: zfile's peak RSS of each side for 1 GiB and 8 GiB [256 MiB, 1 GiB]
  (send and get);
- encrypted: zfile with CURVE against scp, when this zfile has CURVE
  (``zfile keygen``); skipped with a line saying so otherwise;
- http: zfile's HTTP front against nginx and ``python -m http.server``
  (:mod:`_bench_http`).
- fanout (only when asked for, ``--cases fanout``; needs root): one 256 MiB
  [64 MiB] random file to 8 nodes of a ``scripts/cluster`` (network
  namespaces, every link 200 Mbit/s): ``zfile send --to`` all 8 at once
  (star), ``rsync -W`` to each node's ``rsync --daemon`` in turn, and
  ``zfile send`` to one node, the time the fan-out is measured against.
  Every node's copy is checked after every run.  The daemons run for the
  whole case: their RSS is each one's peak over the case (``VmHWM``), and
  their CPU is not measured (0 in the table).
- s3: zfile with the S3 backend into SeaweedFS against aiobotocore straight
  to it (``scripts/_bench_s3.py``; needs the test extra for ``weed``).

Apart from fanout, everything runs on 127.0.0.1.  Wall time is the client
command's (for socat: until the receiving socat has exited, as it alone writes
the file).  MB/s are 10**6 bytes per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from _benchlib import (
    ROOT,
    SOCAT_BLOCK,
    SSHD,
    ZFILE,
    GiB,
    MiB,
    Run,
    Timed,
    Usage,
    check_copy,
    digest_of,
    free_port,
    listening,
    make_random,
    make_repeated,
    make_small,
    med,
    span,
    sync,
    wait_until,
)


class Bench:
    def __init__(self, work: Path, out: Path) -> None:
        self.work = work
        self.out = out
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.live: list[Timed] = []
        # Where discard() moves destinations while a case keeps them (case_small).
        self.spent: Path | None = None
        self.seq = 0
        self._ssh: dict[str, Path] | None = None
        self.baseline: str | None = None

    def _paths(self, label: str) -> tuple[Path, Path]:
        self.seq += 1
        return self.logs / f"{self.seq:04d}-{label}.time", self.logs / f"{self.seq:04d}-{label}.log"

    def serve(self, label: str, cmd: list[str], ready: Callable[[Timed], bool], **kw) -> Timed:
        report, log = self._paths(label + "-server")
        proc = Timed(cmd, report, log, **kw)
        self.live.append(proc)
        wait_until(lambda: ready(proc), label, proc)
        return proc

    def client(self, label: str, cmd: list[str], **kw) -> tuple[float, Usage]:
        report, log = self._paths(label + "-client")
        began = time.monotonic()
        usage = Timed(cmd, report, log, **kw).wait(timeout=3600)
        return time.monotonic() - began, usage

    def retire(self, proc: Timed) -> Usage:
        usage = proc.stop()
        self.live.remove(proc)
        return usage

    def discard(self, path: Path) -> None:
        """Remove a run's destination, or while :attr:`spent` is set move it
        there to be removed after the case.  ext4 without a journal skips
        inodes freed in the last minute when it allocates new ones, scanning
        the inode table for each: deleting one run's 10,000 files made the
        next run of any tool pay for the previous one's clean-up."""
        if self.spent is None:
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            self.spent.mkdir(exist_ok=True)
            path.rename(self.spent / f"{len(list(self.spent.iterdir()))}-{path.name}")

    def cleanup(self) -> None:
        for proc in self.live:
            try:
                proc.kill()
            except (OSError, subprocess.SubprocessError):
                pass
        self.live.clear()

    # zfile -------------------------------------------------------------------------

    def zfile_daemon(self, root: Path, *extra: str, exe: str = ZFILE) -> tuple[Timed, str]:
        port = free_port()
        endpoint = f"tcp://127.0.0.1:{port}"
        cmd = [exe, "serve", "--bind", endpoint, "--root", str(root), *extra]
        proc = self.serve("zfile", cmd, lambda p: "listening on" in p.log.read_text(errors="replace"))
        return proc, endpoint

    def run_zfile(
        self, case: str, src: Path, nbytes: int, nfiles: int, *, daemon_extra=(), client_extra=(), exe: str = ZFILE
    ) -> Run:
        root = self.work / "zstore"
        shutil.rmtree(root, ignore_errors=True)
        daemon, endpoint = self.zfile_daemon(root, *daemon_extra, exe=exe)
        try:
            sync()
            wall, cu = self.client("zfile", [exe, "send", str(src), "--to", endpoint, "--quiet", *client_extra])
        finally:
            su = self.retire(daemon)
        check_copy(src, root / src.name, case)
        self.discard(root)
        return Run("zfile" if exe == ZFILE else "zfile (baseline)", case, nbytes, nfiles, wall, cu, su)

    def run_baseline(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        assert self.baseline is not None
        return self.run_zfile(case, src, nbytes, nfiles, exe=self.baseline)

    def zfile_tools(self) -> list[Callable[[str, Path, int, int], Run]]:
        return [self.run_zfile] + ([self.run_baseline] if self.baseline else [])

    # rsync daemon ------------------------------------------------------------------

    def run_rsync(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        dest = self.work / "rsync-dest"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        port = free_port()
        conf = self.work / "rsyncd.conf"
        user = "uid = root\ngid = root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"use chroot = no\n{user}pid file = {self.work}/rsyncd.pid\n"
            f"[bench]\n    path = {dest}\n    read only = no\n"
        )
        cmd = ["rsync", "--daemon", "--no-detach", f"--config={conf}", f"--port={port}", "--address=127.0.0.1"]
        daemon = self.serve("rsync", cmd, lambda p: listening(port))
        try:
            sync()
            args = ["-a", "-W"] if src.is_dir() else ["-W"]
            wall, cu = self.client("rsync", ["rsync", *args, str(src), f"rsync://127.0.0.1:{port}/bench/"])
        finally:
            su = self.retire(daemon)
        check_copy(src, dest / src.name, case)
        self.discard(dest)
        return Run("rsync", case, nbytes, nfiles, wall, cu, su)

    # scp to a private sshd ----------------------------------------------------------

    def ssh_setup(self) -> dict[str, Path]:
        if self._ssh is not None:
            return self._ssh
        d = self.work / "ssh"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(mode=0o700)
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
        shutil.copy(d / "client_key.pub", d / "authorized_keys")
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        self._ssh = {"dir": d}
        return self._ssh

    def sshd(self) -> tuple[Timed, int]:
        d = self.ssh_setup()["dir"]
        port = free_port()
        conf = d / "sshd_config"
        conf.write_text(
            f"ListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n"
            f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "Subsystem sftp internal-sftp\n"
        )
        proc = self.serve("sshd", [SSHD, "-D", "-e", "-f", str(conf), "-p", str(port)], lambda p: listening(port))
        return proc, port

    def scp_cmd(self, port: int) -> list[str]:
        d = self.ssh_setup()["dir"]
        return [
            "scp", "-q", "-P", str(port), "-i", str(d / "client_key"), "-c", "aes128-gcm@openssh.com",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip

    def run_scp(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        dest = self.work / "scp-dest"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        daemon, port = self.sshd()
        try:
            sync()
            args = ["-r"] if src.is_dir() else []
            wall, cu = self.client("scp", [*self.scp_cmd(port), *args, str(src), f"root@127.0.0.1:{dest}/"])
        finally:
            su = self.retire(daemon)
        check_copy(src, dest / src.name, case)
        self.discard(dest)
        return Run("scp", case, nbytes, nfiles, wall, cu, su)

    # socat: the raw pipe --------------------------------------------------------------

    def run_socat(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        dest = self.work / "socat-dest"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        port = free_port()
        b = str(SOCAT_BLOCK)
        server_cmd = ["socat", "-u", "-b", b, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr",
                      f"OPEN:{dest / src.name},creat,trunc,wronly"]  # fmt: skip
        server = self.serve("socat", server_cmd, lambda p: listening(port))
        try:
            sync()
            began = time.monotonic()
            _, cu = self.client("socat", ["socat", "-u", "-b", b, f"OPEN:{src},rdonly", f"TCP:127.0.0.1:{port}"])
            su = server.wait(timeout=600)
            wall = time.monotonic() - began
            self.live.remove(server)
        except BaseException:
            self.cleanup()
            raise
        check_copy(src, dest / src.name, case)
        shutil.rmtree(dest, ignore_errors=True)
        return Run("socat", case, nbytes, nfiles, wall, cu, su)


# -- the data -------------------------------------------------------------------------


# -- the cases ----------------------------------------------------------------------------


def case_large(b: Bench, src: Path, runs: int, results: list[Run]) -> None:
    size = src.stat().st_size
    tools = [*b.zfile_tools(), b.run_rsync, b.run_scp, b.run_socat]
    for i in range(runs):
        for tool in tools:
            r = tool("large", src, size, 1)
            results.append(r)
            print(f"  large run {i + 1}/{runs} {r.tool:6s} {size / r.wall / 1e6:7.1f} MB/s", file=sys.stderr)


def case_small(b: Bench, src: Path, runs: int, results: list[Run]) -> None:
    files = [p for p in src.iterdir() if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    b.spent = b.work / "spent"  # every run creates its files where none were just deleted
    try:
        for i in range(runs):
            for tool in (*b.zfile_tools(), b.run_rsync, b.run_scp):
                r = tool("small", src, size, len(files))
                results.append(r)
                print(f"  small run {i + 1}/{runs} {r.tool:6s} {len(files) / r.wall:9.0f} files/s", file=sys.stderr)
    finally:
        shutil.rmtree(b.spent, ignore_errors=True)
        b.spent = None


def case_concurrent(b: Bench, src: Path, clients: int, results: list[Run]) -> None:
    size = src.stat().st_size
    root = b.work / "zstore"
    shutil.rmtree(root, ignore_errors=True)
    daemon, endpoint = b.zfile_daemon(root)
    try:
        sync()
        cmd = [sys.executable, __file__, "_clients", endpoint, str(src), str(clients)]
        wall, cu = b.client("zfile-concurrent", cmd)
    finally:
        su = b.retire(daemon)
    for i in range(clients):
        if (root / f"c{i:03d}-{src.name}").stat().st_size != size:
            raise RuntimeError(f"concurrent: client {i}'s file has the wrong size")
    shutil.rmtree(root, ignore_errors=True)
    results.append(Run("zfile", "concurrent", size * clients, clients, wall, cu, su))
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


class BenchCluster:
    """``scripts/cluster`` for the fanout case, on its own bridge and /24, with an
    ``rsync --daemon`` per node beside its zfile daemon."""

    NAME = "zfbench"
    NET = "10.77.2"
    RSYNC_PORT = 8730

    def __init__(self, b: Bench, n: int) -> None:
        self.b = b
        self.state = b.work / "cluster"
        self.env = {
            **os.environ,
            "ZFILE_CLUSTER_NAME": self.NAME,
            "ZFILE_CLUSTER_NET": self.NET,
            "ZFILE_CLUSTER_STATE": str(self.state),
            "ZFILE_CONFIG": os.devnull,
        }
        self.down()
        up = subprocess.run([str(ROOT / "scripts" / "cluster"), "up", str(n)], env=self.env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
        if up.returncode != 0:
            self.down()
            raise RuntimeError(f"scripts/cluster up {n} failed:\n{up.stderr}")
        self.nodes = [line.split() for line in (self.state / "nodes").read_text().splitlines()]
        self.endpoints = [node[2] for node in self.nodes]
        self.list_file = self.state / "nodes.txt"
        self.list_file.write_text("".join(e + "\n" for e in self.endpoints))
        self.rsyncd: list[subprocess.Popen] = []
        for name, netns, endpoint, *_ in self.nodes:
            addr = endpoint.split("//")[1].rsplit(":", 1)[0]
            dest = self.rsync_dest(name)
            dest.mkdir(parents=True, exist_ok=True)
            conf = self.state / name / "rsyncd.conf"
            conf.write_text(f"use chroot = no\nuid = root\ngid = root\npid file = {self.state / name}/rsyncd.pid\n"
                            f"[bench]\n    path = {dest}\n    read only = no\n")  # fmt: skip
            cmd = ["ip", "netns", "exec", netns, "rsync", "--daemon", "--no-detach", f"--config={conf}",
                   f"--port={self.RSYNC_PORT}", f"--address={addr}"]  # fmt: skip
            log = open(self.state / name / "rsyncd.log", "ab")  # noqa: SIM115 - lives as long as the daemon
            self.rsyncd.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        time.sleep(1)  # rsync's listen is not visible from this namespace's /proc/net/tcp
        for proc in self.rsyncd:
            if proc.poll() is not None:
                raise RuntimeError(f"an rsync daemon of the cluster exited {proc.returncode}")

    def rsync_dest(self, name: str) -> Path:
        return self.state / name / "rsync-dest"

    def zfile_root(self, name: str) -> Path:
        return Path(next(node[4] for node in self.nodes if node[0] == name))

    def peak_rss_kib(self) -> int:
        """The largest VmHWM (peak RSS, KiB) of the zfile daemons so far."""
        peak = 0
        for node in self.nodes:
            for line in Path(f"/proc/{node[3]}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        return peak

    def down(self) -> None:
        for proc in getattr(self, "rsyncd", []):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        subprocess.run([str(ROOT / "scripts" / "cluster"), "down"], env=self.env, capture_output=True, timeout=120)


def case_fanout(b: Bench, src: Path, n: int, runs: int, results: list[Run]) -> None:
    size = src.stat().st_size
    cluster = BenchCluster(b, n)
    try:
        first = cluster.nodes[0][0]

        def star() -> Run:
            sync()
            cmd = [ZFILE, "send", str(src), "--to", f"@{cluster.list_file}", "--quiet", "-I", "--timeout", "60"]
            wall, cu = b.client("zfile-star", cmd)
            for node in cluster.nodes:
                check_copy(src, cluster.zfile_root(node[0]) / src.name, "fanout")
            return Run(f"zfile star x{n}", "fanout", size * n, n, wall, cu, Usage(rss_kib=cluster.peak_rss_kib()))

        def one() -> Run:
            sync()
            cmd = [ZFILE, "send", str(src), "--to", cluster.endpoints[0], "--quiet", "-I", "--timeout", "60"]
            wall, cu = b.client("zfile-one", cmd)
            check_copy(src, cluster.zfile_root(first) / src.name, "fanout")
            return Run("zfile x1", "fanout", size, 1, wall, cu, Usage(rss_kib=cluster.peak_rss_kib()))

        def rsync_each() -> Run:
            for node in cluster.nodes:
                (cluster.rsync_dest(node[0]) / src.name).unlink(missing_ok=True)
            sync()
            urls = [
                f"rsync://{e.split('//')[1].rsplit(':', 1)[0]}:{cluster.RSYNC_PORT}/bench/" for e in cluster.endpoints
            ]
            script = 'for url in "$@"; do rsync -W "$0" "$url" || exit 1; done'
            wall, cu = b.client("rsync-each", ["bash", "-c", script, str(src), *urls])
            for node in cluster.nodes:
                check_copy(src, cluster.rsync_dest(node[0]) / src.name, "fanout")
            return Run(f"rsync each x{n}", "fanout", size * n, n, wall, cu, Usage())

        for i in range(runs):
            # Star first: the table's ratio column compares each tool with the first.
            for tool in (star, rsync_each, one):
                r = tool()
                results.append(r)
                print(f"  fanout run {i + 1}/{runs} {r.tool:14s} {r.wall:7.1f} s", file=sys.stderr)
    finally:
        cluster.down()


# -- reporting ----------------------------------------------------------------------------


def summarize(results: list[Run]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in results:
        out.setdefault(r.case, {}).setdefault(r.tool, {})
    for case, tools in out.items():
        for tool in tools:
            rs = [r for r in results if r.case == case and r.tool == tool]
            tools[tool] = {
                "runs": len(rs),
                "wall": med([r.wall for r in rs]),
                "mbps": med([r.nbytes / r.wall / 1e6 for r in rs]),
                "fps": med([r.nfiles / r.wall for r in rs]),
                "client_rss_mib": med([r.client.rss_kib / 1024 for r in rs]),
                "server_rss_mib": med([r.server.rss_kib / 1024 for r in rs]),
            }
    return out


def table_rows(results: list[Run], case: str, per_file: bool) -> list[str]:
    tools = list(dict.fromkeys(r.tool for r in results if r.case == case))
    rows = []
    base = {t: med([r.wall for r in results if r.case == case and r.tool == t]) for t in tools}
    for tool in tools:
        rs = [r for r in results if r.case == case and r.tool == tool]
        walls = [r.wall for r in rs]
        rate = [r.nfiles / r.wall for r in rs] if per_file else [r.nbytes / r.wall / 1e6 for r in rs]
        first = next(iter(base.values()))
        ratio = "" if tool.startswith("zfile") and tool != "zfile (baseline)" else f"{first / base[tool]:.2f}"
        rows.append(
            f"| {case} | {tool} | {len(rs)} | {span(walls, '.2f')} | {span(rate, ',.0f' if per_file else '.0f')} "
            f"| {span([r.client.cpu for r in rs], '.2f')} | {span([r.server.cpu for r in rs], '.2f')} "
            f"| {span([r.client.rss_kib / 1024 for r in rs], '.0f')} "
            f"| {span([r.server.rss_kib / 1024 for r in rs], '.0f')} | {ratio} |"
        )
    return rows


def markdown(results: list[Run], notes: list[str], header: str) -> str:
    lines = [
        header,
        "",
        "Medians, (min–max) over the runs.  MB/s = 10^6 bytes/s; CPU = user + system seconds; "
        "RSS = peak resident set size (MiB) from `/usr/bin/time -v`.  "
        '"zfile wall ÷ peer" < 1 means zfile was faster.',
        "",
        "| case | tool | runs | wall s | MB/s or files/s | client CPU s | server CPU s "
        "| client RSS MiB | server RSS MiB | zfile wall ÷ peer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in dict.fromkeys(r.case for r in results):
        lines += table_rows(results, case, per_file=case.endswith("small"))
    lines.append("")
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def charts(results: list[Run], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    summary = summarize(results)

    def bar(name: str, title: str, ylabel: str, values: dict[str, float]) -> None:
        if not values:
            return
        fig, ax = plt.subplots(figsize=(7.5, 3.2), dpi=80)
        values = {k.replace("zfile (baseline)", "baseline"): v for k, v in values.items()}
        labels = list(values)
        colors = [
            "#1f77b4" if k.startswith("zfile") else "#9ecae1" if k.startswith("baseline") else "#999999" for k in labels
        ]
        ax.bar(labels, [values[k] for k in labels], color=colors)
        for i, k in enumerate(labels):
            ax.text(i, values[k], f"{values[k]:,.0f}", ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelsize=8)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        made.append(path)

    large = summary.get("large", {})
    bar("large-mbps", "large file: MB/s (median, higher is better)", "MB/s", {k: v["mbps"] for k, v in large.items()})
    rss = {f"{k}\nclient": v["client_rss_mib"] for k, v in large.items()}
    rss.update({f"{k}\nserver": v["server_rss_mib"] for k, v in large.items()})
    bar("large-rss", "large file: peak RSS per side (MiB, lower is better)", "MiB", dict(sorted(rss.items())))
    small = summary.get("small", {})
    bar(
        "small-fps",
        "4 KiB files: files/s (median, higher is better)",
        "files/s",
        {k: v["fps"] for k, v in small.items()},
    )
    mem = {}
    for case, tools in summary.items():
        if case.startswith("memory"):
            size = case.split(" ", 1)[1]
            mem[f"daemon\n{size}"] = tools["zfile send"]["server_rss_mib"]
            mem[f"send\n{size}"] = tools["zfile send"]["client_rss_mib"]
            mem[f"get\n{size}"] = tools["zfile get"]["client_rss_mib"]
    bar("memory", "zfile peak RSS by file size (MiB)", "MiB", mem)
    return made


def goals(results: list[Run], quick: bool) -> list[str]:
    s = summarize(results)
    lines = []
    large = s.get("large", {})
    if {"zfile", "rsync", "socat"} <= large.keys():
        z = large["zfile"]["wall"]
        lines.append(f"large: zfile wall ÷ rsync = {z / large['rsync']['wall']:.2f} (goal ≤ 0.90); "
                     f"÷ socat = {z / large['socat']['wall']:.2f} (goal ≤ 1.20)")  # fmt: skip
    small = s.get("small", {})
    if {"zfile", "rsync"} <= small.keys():
        lines.append(f"small: zfile files/s ÷ rsync = {small['zfile']['fps'] / small['rsync']['fps']:.2f} "
                     "(goal ≥ 1.50)")  # fmt: skip
    peaks = [(r.case, r.tool, max(r.client.rss_kib, r.server.rss_kib) / 1024) for r in results
             if r.tool.startswith("zfile") and r.case not in ("concurrent", "fanout")
             and not r.case.startswith(("http", "s3"))]  # fmt: skip
    if peaks:
        worst = max(peaks, key=lambda p: p[2])
        lines.append(f"memory: largest zfile peak RSS of one side {worst[2]:.0f} MiB ({worst[0]}, {worst[1]}) "
                     "(goal ≤ 64 MiB)")  # fmt: skip
    conc = s.get("concurrent", {}).get("zfile")
    if conc and "zfile" in large:
        lines.append(f"concurrent: {conc['runs'] and 'all verified'}; aggregate {conc['mbps']:.0f} MB/s = "
                     f"{conc['mbps'] / large['zfile']['mbps']:.0%} of single-stream (goal ≥ 80%), "
                     f"daemon peak RSS {conc['server_rss_mib']:.0f} MiB")  # fmt: skip
    fan = s.get("fanout", {})
    one = fan.get("zfile x1")
    if one:
        for tool, v in fan.items():
            if tool != "zfile x1":
                lines.append(f"fanout: {tool} wall ÷ zfile to 1 node = {v['wall'] / one['wall']:.2f} "
                             "(chain goal ≤ 1.30; star and rsync expected near the node count)")  # fmt: skip
        lines.append(f"fanout: largest zfile daemon peak RSS {max(v['server_rss_mib'] for v in fan.values()):.0f} MiB")
    enc = s.get("encrypted", {})
    if {"zfile+CURVE", "scp"} <= enc.keys():
        lines.append(f"encrypted: zfile+CURVE MB/s ÷ scp = {enc['zfile+CURVE']['mbps'] / enc['scp']['mbps']:.2f} "
                     "(goal ≥ 2.00)")  # fmt: skip
    return lines


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_clients":
        asyncio.run(_clients(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        return 0
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="256 MiB / 2,000 files, fewer runs (under 2 minutes)")
    ap.add_argument("--runs", type=int, help="runs per tool of the large case (default 5, quick 3)")
    ap.add_argument(
        "--cases",
        default="large,small,concurrent,memory,encrypted,http,s3",
        help="comma-separated subset; also fanout (root only, not in the default)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench-results"), help="where the table and charts go")
    ap.add_argument("--workdir", help="scratch directory for data (default: a new one under /var/tmp)")
    ap.add_argument(
        "--baseline",
        metavar="EXE",
        help="another zfile executable (e.g. an older build) to run as one more tool in the large and small cases",
    )
    args = ap.parse_args()
    cases = set(args.cases.split(","))
    quick = args.quick
    runs = args.runs or (3 if quick else 5)
    small_runs = 1 if quick else 3
    large_size = 256 * MiB if quick else GiB
    small_count = 2_000 if quick else 10_000
    conc_size = 2 * MiB if quick else 10 * MiB
    fan_size = 64 * MiB if quick else 256 * MiB
    mem_sizes = [("256 MiB", 256 * MiB), ("1 GiB", GiB)] if quick else [("1 GiB", GiB), ("8 GiB", 8 * GiB)]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="zfile-bench-", dir="/var/tmp"))
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    b = Bench(work, out)
    b.baseline = args.baseline
    results: list[Run] = []
    notes: list[str] = []
    began = time.monotonic()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"bench: data in {data}", file=sys.stderr)
        large = make_random(data / f"random-{large_size // MiB}MiB.bin", large_size)
        if "large" in cases:
            print(f"bench: large ({large_size // MiB} MiB, {runs} runs per tool)", file=sys.stderr)
            case_large(b, large, runs, results)
        if "small" in cases:
            print(f"bench: small ({small_count} x 4 KiB)", file=sys.stderr)
            case_small(b, make_small(data / f"small-{small_count}", small_count, 4096), small_runs, results)
        if "concurrent" in cases:
            print(f"bench: concurrent (100 x {conc_size // MiB} MiB)", file=sys.stderr)
            case_concurrent(b, make_random(data / f"random-{conc_size // MiB}MiB.bin", conc_size), 100, results)
        if "memory" in cases:
            print("bench: memory scaling", file=sys.stderr)
            files = []
            for label, size in mem_sizes:
                path = data / f"mem-{size // MiB}MiB.bin"
                files.append((label, large if size == large_size else make_repeated(path, large, size)))
            case_memory(b, files, results)
            for _, size in mem_sizes:
                (data / f"mem-{size // MiB}MiB.bin").unlink(missing_ok=True)
        if "encrypted" in cases:
            print("bench: encrypted", file=sys.stderr)
            note = case_encrypted(b, large, max(1, runs // 2 + 1) if not quick else 1, results)
            if note:
                notes.append(note)
                print(f"bench: {note}", file=sys.stderr)
        if "http" in cases:
            import _bench_http

            what = f"GET and PUT of {large_size // MiB} MiB, 100 x {conc_size // MiB} MiB"
            print(f"bench: http ({what})", file=sys.stderr)
            conc = make_random(data / f"random-{conc_size // MiB}MiB.bin", conc_size)
            _bench_http.case_http(b, large, max(1, runs // 2 + 1), conc, 100, results)
        if "fanout" in cases:
            fan_src = make_random(data / f"random-{fan_size // MiB}MiB.bin", fan_size)
            print(f"bench: fanout ({fan_size // MiB} MiB to 8 nodes at 200 Mbit/s)", file=sys.stderr)
            case_fanout(b, fan_src, 8, 1 if quick else 3, results)
        if "s3" in cases:
            from _bench_s3 import case_s3

            print("bench: s3 (zfile into SeaweedFS against aiobotocore straight to it)", file=sys.stderr)
            s3_small = make_small(data / "small-1000", 1000, 4096)
            s3_mem = []
            for label, size in mem_sizes:
                path = data / f"mem-{size // MiB}MiB.bin"
                s3_mem.append((label, large if size == large_size else make_repeated(path, large, size)))
            notes += case_s3(b, large, s3_small, s3_mem, max(1, runs // 2 + 1), results)
            for _, size in mem_sizes:
                if size != large_size:
                    (data / f"mem-{size // MiB}MiB.bin").unlink(missing_ok=True)
    except KeyboardInterrupt:
        print("bench: interrupted; reporting what finished", file=sys.stderr)
        notes.append("interrupted before every case finished")
    finally:
        b.cleanup()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    cpu = os.cpu_count()
    header = (
        f"## zfile benchmark ({'quick' if quick else 'full'}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
        f"`scripts/bench{' --quick' if quick else ''}` on {cpu} CPUs, loopback; "
        f"large = {large_size // MiB} MiB, small = {small_count:,} x 4 KiB, concurrent = 100 x {conc_size // MiB} MiB"
        + (f"; fanout = {fan_size // MiB} MiB to 8 nodes at 200 Mbit/s (scripts/cluster)" if "fanout" in cases else "")
        + f"; took {time.monotonic() - began:.0f} s."
    )
    notes = goals(results, quick) + notes
    if "http" in cases:
        import _bench_http

        notes = _bench_http.goals(summarize(results)) + notes
    text = markdown(results, notes, header)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    made = charts(results, out) if results else []
    print(text)
    print(f"bench: wrote {out / 'results.md'}, results.json and {len(made)} chart(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
