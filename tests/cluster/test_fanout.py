"""Star fan-out and gather on the namespace cluster: shaped links, nodes killed or paused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import blake3
import pytest

from tests.cluster.conftest import Cluster, Node
from tests.conftest import zfile_cli

pytestmark = pytest.mark.slow
MiB = 1 << 20


def digest_of(path: Path) -> str:
    return blake3.blake3().update_mmap(str(path)).hexdigest()


def stored(node: Node, name: str) -> Path:
    return node.root / name


def partial_bytes(node: Node) -> int:
    return sum(p.stat().st_size for p in (node.root / ".zfile" / "tmp").glob("*.part"))


def send_json(cluster: Cluster, *args: str, timeout: str = "5") -> subprocess.CompletedProcess:
    to = ",".join(cluster.endpoints)
    return zfile_cli("send", *args, "--to", to, "--fanout", "star", "--json", "--timeout", timeout, check=False)


def test_every_node_gets_byte_identical_files_and_gather_brings_them_back(make_cluster, tmp_path):
    cluster = make_cluster(3)
    src = tmp_path / "data"
    (src / "deep").mkdir(parents=True)
    big = src / "big.bin"
    big.write_bytes(os.urandom(12 * MiB))
    for i in range(20):
        (src / "deep" / f"small{i}.txt").write_bytes(os.urandom(100 * i))
    nodes = tmp_path / "nodes.txt"
    nodes.write_text("\n".join(cluster.endpoints) + "\n")

    proc = zfile_cli("send", str(src), "--to", f"@{nodes}", "--fanout", "star", "--json", check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [r["endpoint"] for r in report] == cluster.endpoints
    assert {r["result"] for r in report} == {"ok"} and {r["files"] for r in report} == {21}
    assert len({r["digest"] for r in report}) == 1
    for node in cluster.nodes:
        for path in src.rglob("*"):
            if path.is_file():
                assert stored(node, f"data/{path.relative_to(src)}").read_bytes() == path.read_bytes(), node.name

    out = tmp_path / "collected"
    proc = zfile_cli("get", "data/", "--from", ",".join(cluster.endpoints), "-o", str(out), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "3 of 3 node(s) done" in proc.stdout
    for node in cluster.nodes:
        host = node.endpoint.split("//")[1].split(":")[0]
        assert digest_of(out / host / "data" / "big.bin") == digest_of(big)
        assert len(list((out / host / "data" / "deep").iterdir())) == 20


@pytest.mark.parametrize("how", ["killed", "paused"])
def test_a_node_lost_mid_transfer_fails_alone_and_is_named(make_cluster, tmp_path, how):
    cluster = make_cluster(3)
    src = tmp_path / "big.bin"
    # Three nodes share the sender's 200 Mbit/s: about 8 s for the lot, ample time to lose one.
    src.write_bytes(os.urandom(64 * MiB))
    victim = cluster.nodes[1]
    to = ",".join(cluster.endpoints)
    cmd = [sys.executable, "-m", "zfile", "send", str(src), "--to", to, "--fanout", "star", "--timeout", "3"]
    client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while partial_bytes(victim) < 4 * MiB:
            assert client.poll() is None, client.communicate()
            assert time.monotonic() < deadline, "the victim never got 4 MiB"
            time.sleep(0.05)
        victim.signal(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        stdout, stderr = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
    print(stdout, stderr, sep="\n")
    assert client.returncode == 1, stderr
    assert f"zfile: error: {victim.endpoint}: " in stderr
    assert f"failed: {victim.endpoint}" in stdout
    lines = {line.split()[0]: line for line in stdout.splitlines() if line.startswith("tcp://")}
    assert "FAILED" in lines[victim.endpoint]
    assert int(lines[victim.endpoint].split()[2].replace(",", "")) >= 4 * MiB
    expected = digest_of(src)
    for node in cluster.nodes:
        if node is victim:
            continue
        assert " ok " in lines[node.endpoint] and expected in lines[node.endpoint]
        assert digest_of(stored(node, "big.bin")) == expected
        assert partial_bytes(node) == 0
        ls = json.loads(zfile_cli("ls", "-R", "--from", node.endpoint, "--json").stdout)
        assert [(e["name"], e["digest"]) for e in ls] == [("big.bin", expected)]
    assert not stored(victim, "big.bin").exists()
    # What the victim got stays as a partial, for a later resume.
    assert partial_bytes(victim) >= 4 * MiB


def test_gather_from_a_paused_node_fails_it_alone(make_cluster, tmp_path):
    cluster = make_cluster(3)
    src = tmp_path / "log.bin"
    src.write_bytes(os.urandom(2 * MiB))
    assert send_json(cluster, str(src)).returncode == 0
    paused = cluster.nodes[2]
    paused.signal(signal.SIGSTOP)
    out = tmp_path / "collected"
    proc = zfile_cli(
        "get", "log.bin", "--from", ",".join(cluster.endpoints), "-o", str(out), "--json", "--timeout", "2", check=False
    )  # fmt: skip
    assert proc.returncode == 1
    report = {r["endpoint"]: r for r in json.loads(proc.stdout)}
    # Stopped, its kernel still takes the connection: the error says the handshake never came.
    error = report[paused.endpoint]["error"]
    assert report[paused.endpoint]["result"] == "failed" and "completed no ZeroMQ handshake within 2 s" in error
    for node in cluster.nodes[:2]:
        host = node.endpoint.split("//")[1].split(":")[0]
        assert report[node.endpoint]["result"] == "ok"
        assert digest_of(out / host / "log.bin") == digest_of(src)
    assert not (out / paused.endpoint.split("//")[1].split(":")[0]).exists()
