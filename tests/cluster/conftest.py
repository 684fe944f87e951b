"""A cluster of daemons in network namespaces (``scripts/cluster``), for fan-out tests.

Needs root and ``ip``/``tc``; elsewhere the tests that use :func:`cluster` are
skipped.  The fixture brings up its own bridge and /24 (not the defaults of a
``scripts/cluster up`` someone may be running by hand) and always tears down.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "cluster"
NAME = "zft"
NET = "10.77.1"


@dataclass(frozen=True)
class Node:
    """One daemon of the cluster: ``name`` (n1, n2, ...), network namespace,
    endpoint, daemon PID, store root and log file."""

    name: str
    netns: str
    endpoint: str
    pid: int
    root: Path
    log: Path

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the node dies with no goodbye, its connections reset."""
        self.signal(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Cluster:
    nodes: list[Node]
    state: Path
    env: dict[str, str]

    @property
    def endpoints(self) -> list[str]:
        return [n.endpoint for n in self.nodes]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``scripts/cluster ARGS`` with this cluster's settings."""
        proc = subprocess.run([str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"scripts/cluster {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc


def _usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "needs ip and tc (iproute2)"
    if not (REPO / ".venv" / "bin" / "zfile").exists():
        return "needs .venv/bin/zfile"
    return None


def cluster_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ZFILE_CLUSTER_NAME": NAME,
        "ZFILE_CLUSTER_NET": NET,
        "ZFILE_CLUSTER_STATE": str(tmp_path / "cluster"),
    }


def start_cluster(n: int, tmp_path: Path, *serve_args: str) -> Cluster:
    """``scripts/cluster up n``; raises AssertionError (after tearing down) if it fails."""
    env = cluster_env(tmp_path)
    cluster = Cluster([], tmp_path / "cluster", env)
    # A run killed before its teardown leaves the fixed names taken.
    cluster.run("down")
    proc = cluster.run("up", str(n), "--", *serve_args, check=False)
    if proc.returncode != 0:
        cluster.run("down", check=False)
        raise AssertionError(f"scripts/cluster up {n} failed:\n{proc.stderr}")
    for line in (cluster.state / "nodes").read_text().splitlines():
        name, netns, endpoint, pid, root, log = line.split()
        cluster.nodes.append(Node(name, netns, endpoint, int(pid), Path(root), Path(log)))
    assert proc.stdout.split() == cluster.endpoints
    return cluster


@pytest.fixture
def make_cluster(tmp_path: Path):
    """``make_cluster(n, *serve_args) -> Cluster``: up to one cluster per test, always torn down."""
    reason = _usable()
    if reason:
        pytest.skip(reason)
    made: list[Cluster] = []

    def make(n: int, *serve_args: str) -> Cluster:
        assert not made, "one cluster per test: the names are fixed"
        made.append(start_cluster(n, tmp_path, *serve_args))
        return made[0]

    try:
        yield make
    finally:
        Cluster([], tmp_path / "cluster", cluster_env(tmp_path)).run("down")
