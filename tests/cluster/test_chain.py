"""Chain fan-out on the namespace cluster: shaped links, a middle node killed or paused mid-transfer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.cluster.test_fanout import digest_of, partial_bytes, stored
from tests.conftest import zfile_cli

pytestmark = pytest.mark.slow
MiB = 1 << 20


def test_a_chain_of_four_commits_the_same_verified_file_everywhere(make_cluster, tmp_path):
    cluster = make_cluster(4, "--forward")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(24 * MiB))
    proc = zfile_cli("send", str(src), "--to", ",".join(cluster.endpoints), "--json", check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [r["result"] for r in report] == ["ok"] * 4
    assert {r["digest"] for r in report} == {digest_of(src)}
    for node in cluster.nodes:
        assert digest_of(stored(node, "big.bin")) == digest_of(src)
        assert partial_bytes(node) == 0
    # Only the first node heard from this machine; each later one from the node before it.
    first, *rest = cluster.nodes
    assert "re-linked" not in first.log_text()
    for node in rest[:-1]:
        assert "chain: " not in node.log_text()


@pytest.mark.parametrize("how", ["killed", "paused"])
def test_a_middle_node_lost_mid_transfer_is_skipped_and_the_rest_commit(make_cluster, tmp_path, how):
    cluster = make_cluster(4, "--forward")
    src = tmp_path / "big.bin"
    # At 200 Mbit/s a chain moves 64 MiB in about 3 s, ample time to lose a node.
    src.write_bytes(os.urandom(64 * MiB))
    victim = cluster.nodes[1]
    to = ",".join(cluster.endpoints)
    cmd = [sys.executable, "-m", "zfile", "send", str(src), "--to", to, "--json", "--timeout", "5"]
    client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while partial_bytes(victim) < 8 * MiB:
            assert client.poll() is None, client.communicate()
            assert time.monotonic() < deadline, "the victim never got 8 MiB"
            time.sleep(0.02)
        victim.signal(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        stdout, stderr = client.communicate(timeout=180)
    finally:
        if client.poll() is None:
            client.kill()
        if how == "paused":
            victim.signal(signal.SIGCONT)
    print(stdout, stderr, sep="\n")
    for node in cluster.nodes:  # shown when an assertion below fails
        print(f"--- {node.name}", *node.log_text().splitlines()[1:], sep="\n")
    assert client.returncode == 1, stderr
    assert f"zfile: error: {victim.endpoint}: big.bin: " in stderr
    report = {r["endpoint"]: r for r in json.loads(stdout)}
    assert report[victim.endpoint]["result"] == "failed"
    expected = digest_of(src)
    for node in cluster.nodes:
        if node is victim:
            continue
        assert report[node.endpoint]["result"] == "ok" and report[node.endpoint]["digest"] == expected
        assert digest_of(stored(node, "big.bin")) == expected
        ls = json.loads(zfile_cli("ls", "-R", "--from", node.endpoint, "--json").stdout)
        assert [(e["name"], e["digest"]) for e in ls] == [("big.bin", expected)]
    # The node before the victim linked past it; the one after took over its own upload.
    assert f"re-linked past {victim.endpoint}" in cluster.nodes[0].log_text()
    assert "taken over" in cluster.nodes[2].log_text()
    assert not stored(victim, "big.bin").exists()
    if how == "killed":
        # What the victim got stays as a partial, for a later resume.
        assert partial_bytes(victim) >= 8 * MiB
