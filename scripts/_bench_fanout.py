"""The ``fanout`` case of ``scripts/bench`` (only with ``--cases fanout``; needs
root): one file to the nodes of a ``scripts/cluster`` (network namespaces on
one bridge, every link shaped to 200 Mbit/s, daemons with ``--forward``):
``zfile send --to`` all of them along a pipelined chain (``--fanout chain``,
each node forwarding to the next), the same to all of them at once
(``--fanout star``), ``rsync -W`` to each node's ``rsync --daemon`` in turn,
``zfile send`` to one node (the time the fan-out is measured against), and
the chain with one node SIGKILLed mid-transfer (the others must commit; the
killed node's daemon is started again after the run).  Every node's copy is
checked after every run.  The daemons run for the whole case: their RSS is
each one's peak over the case (``VmHWM``), and their CPU is not measured (0
in the table).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from _bench_tools import Bench
from _benchlib import ROOT, ZFILE, Run, Timed, Usage, check_copy, med, parse_time_v, sync, wait_exit


class BenchCluster:
    """``scripts/cluster`` for the fanout case, on its own bridge and /24, with an
    ``rsync --daemon`` per node beside its zfile daemon."""

    NAME = "zfbench"
    NET = "10.77.2"
    RSYNC_PORT = 8730
    SERVE_ARGS = ("--forward",)

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
        # --forward: a chain's nodes pass each chunk on to the next node.
        up = subprocess.run([str(ROOT / "scripts" / "cluster"), "up", str(n), "--", *self.SERVE_ARGS], env=self.env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
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

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``'s zfile daemon (no clean-up, as in a crash)."""
        os.kill(int(self.nodes[i][3]), signal.SIGKILL)

    def restart(self, i: int) -> None:
        """Start node ``i``'s daemon again after :meth:`kill`, as ``scripts/cluster
        up`` started it, and record its PID where ``scripts/cluster down`` reads it."""
        name, netns, endpoint, _, root, log = self.nodes[i][:6]
        cmd = ["ip", "netns", "exec", netns, str(ROOT / ".venv" / "bin" / "zfile"), "serve", "--bind", endpoint,
               "--root", root, "--insecure", *self.SERVE_ARGS]  # fmt: skip
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.nodes[i][3] = str(proc.pid)
        (self.state / name / "pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 20
        while "listening on" not in Path(log).read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {name}'s daemon did not start again:\n{Path(log).read_text()}")
            time.sleep(0.05)

    def peak_rss_kib(self) -> int:
        """The largest VmHWM (peak RSS, KiB) of the zfile daemons so far."""
        peak = 0
        for node in self.nodes:
            try:
                status = Path(f"/proc/{node[3]}/status").read_text()
            except OSError:  # a node killed a moment ago
                continue
            for line in status.splitlines():
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

        def fan(how: str) -> tuple[list[str], str]:
            cmd = [ZFILE, "send", str(src), "--to", f"@{cluster.list_file}", "--fanout", how, "--quiet", "-I",
                   "--timeout", "60"]  # fmt: skip
            return cmd, f"zfile {how} x{n}"

        def multi(how: str) -> Run:
            sync()
            cmd, tool = fan(how)
            wall, cu = b.client(f"zfile-{how}", cmd)
            for node in cluster.nodes:
                check_copy(src, cluster.zfile_root(node[0]) / src.name, "fanout")
            return Run(tool, "fanout", size * n, n, wall, cu, Usage(rss_kib=cluster.peak_rss_kib()))

        def chain() -> Run:
            return multi("chain")

        def star() -> Run:
            return multi("star")

        victim = n // 2  # mid-chain: the hop before it must link past it

        def chain_kill() -> Run:
            """The chain with node ``victim`` SIGKILLed at half the no-failure
            chain's median wall; the command fails (one node did not commit)
            and the run counts only if every other node holds the file."""
            sync()
            cmd, tool = fan("chain")
            walls = [r.wall for r in results if r.case == "fanout" and r.tool == tool]
            at = med(walls) / 2 if walls else 1.0
            killed = cluster.nodes[victim][0]
            (cluster.zfile_root(killed) / src.name).unlink(missing_ok=True)
            report, log = b.logs / f"fanout-kill-{len(results)}.time", b.logs / f"fanout-kill-{len(results)}.log"
            began = time.monotonic()
            proc = Timed(cmd, report, log)
            try:
                time.sleep(at)
                cluster.kill(victim)
                wait_exit(proc.proc, 600)
            finally:
                proc.kill()
            wall = time.monotonic() - began
            cu = parse_time_v(report)
            text = log.read_text(errors="replace")
            if proc.proc.returncode == 0 or cluster.nodes[victim][2] not in text:
                raise RuntimeError(f"fanout: the chain did not report the killed node {killed}:\n{text}")
            for node in cluster.nodes:
                if node[0] != killed:
                    check_copy(src, cluster.zfile_root(node[0]) / src.name, "fanout (one node killed)")
            if (cluster.zfile_root(killed) / src.name).exists():
                raise RuntimeError(f"fanout: the killed node {killed} shows the file under its final name")
            cluster.restart(victim)
            return Run(f"zfile chain x{n}, 1 killed", "fanout", size * (n - 1), n - 1, wall, cu,
                       Usage(rss_kib=cluster.peak_rss_kib()))  # fmt: skip

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
            # Chain first: the table's ratio column compares each tool with the first.
            for tool in (chain, star, rsync_each, one, chain_kill):
                r = tool()
                results.append(r)
                print(f"  fanout run {i + 1}/{runs} {r.tool:14s} {r.wall:7.1f} s", file=sys.stderr)
    finally:
        cluster.down()
