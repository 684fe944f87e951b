"""The ``fanout`` case of ``scripts/bench`` (only with ``--cases fanout``; needs
root): one file to the nodes of a ``scripts/cluster`` (network namespaces on
one bridge, every link shaped to 200 Mbit/s): ``zfile send --to`` all of them
at once (star), ``rsync -W`` to each node's ``rsync --daemon`` in turn, and
``zfile send`` to one node, the time the fan-out is measured against.  Every
node's copy is checked after every run.  The daemons run for the whole case:
their RSS is each one's peak over the case (``VmHWM``), and their CPU is not
measured (0 in the table).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from _bench_tools import Bench
from _benchlib import ROOT, ZFILE, Run, Usage, check_copy, sync


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
