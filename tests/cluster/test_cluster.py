"""``scripts/cluster``: namespaces on one shaped bridge, a daemon in each, and a clean ``down``."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.cluster.conftest import NAME, NET
from tests.conftest import zfile_cli

pytestmark = pytest.mark.slow


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def test_up_starts_a_reachable_daemon_per_node_on_shaped_links(make_cluster, tmp_path):
    cluster = make_cluster(3)
    assert cluster.endpoints == [f"tcp://{NET}.{10 + i}:5555" for i in (1, 2, 3)]
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 100_000)
    for node in cluster.nodes:
        zfile_cli("send", str(src), "--to", node.endpoint)
        assert "a.bin" in zfile_cli("ls", "-R", "--from", node.endpoint).stdout
    for node in cluster.nodes:
        qdisc = subprocess.run(
            ["ip", "netns", "exec", node.netns, "tc", "qdisc", "show", "dev", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "tbf" in qdisc and "200Mbit" in qdisc
        # Nothing is routed off the bridge: the node knows only its /24.
        routes = _ip("-n", node.netns, "route", "show")
        assert "default" not in routes
        assert routes.split()[0] == f"{NET}.0/24"
    # The host's side is one node's link too, both ways: what it sends, and through the ifb what it receives.
    for dev in (NAME, f"{NAME}i"):
        qdisc = subprocess.run(["tc", "qdisc", "show", "dev", dev], capture_output=True, text=True, check=True).stdout
        assert "tbf" in qdisc and "200Mbit" in qdisc, dev
    # Nodes reach each other, not only the host.
    ls = subprocess.run(
        ["ip", "netns", "exec", cluster.nodes[0].netns, sys.executable, "-m", "zfile", "ls", "-R"]
        + ["--from", cluster.nodes[2].endpoint],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ls.returncode == 0 and "a.bin" in ls.stdout, ls.stderr


def test_down_removes_everything_even_with_a_paused_node_and_twice(make_cluster):
    cluster = make_cluster(2)
    cluster.nodes[0].signal(signal.SIGSTOP)
    cluster.run("down")
    cluster.run("down")
    assert not [ns for ns in _ip("netns", "list").split() if ns.startswith(f"{NAME}-n")]
    links = _ip("-o", "link", "show")
    assert f" {NAME}:" not in links and f" {NAME}v" not in links and f" {NAME}i:" not in links
    for node in cluster.nodes:
        assert not _alive(node.pid)


def test_a_failed_up_leaves_nothing_behind(make_cluster, tmp_path):
    from tests.cluster.conftest import Cluster, cluster_env

    cluster = Cluster([], tmp_path / "cluster", cluster_env(tmp_path))
    proc = cluster.run("up", "2", "--", "--no-such-flag", check=False)
    assert proc.returncode != 0 and "did not start" in proc.stderr
    assert not [ns for ns in _ip("netns", "list").split() if ns.startswith(f"{NAME}-n")]
    assert f" {NAME}:" not in _ip("-o", "link", "show")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
