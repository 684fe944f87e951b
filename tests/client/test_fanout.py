"""Star fan-out and gather (zfile.client.fanout) against daemons on loopback;
tests/cluster/test_fanout.py runs the same over shaped links with nodes dying."""

from __future__ import annotations

import json
import os
from pathlib import Path

import blake3
import pytest

from zfile.client.config import ClientConfig
from zfile.client.fanout import gather, node_label, read_targets, send_everywhere, tree_digest
from zfile.client.plan import plan_upload
from zfile.client.quickcheck import Compare
from zfile.errors import EndpointError, LocalFileError, PeerUnreachable, RemoteError

from ..conftest import free_port, start_daemon, zfile_cli


def b3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


@pytest.fixture
def two_daemons(tmp_path: Path):
    daemons = [start_daemon(tmp_path / f"store{i}", tmp_path / f"daemon{i}.log") for i in (1, 2)]
    yield daemons
    for d in daemons:
        assert d.stop() == 0, d.log_text()


def test_read_targets_takes_a_comma_list_or_a_file_of_lines(tmp_path):
    assert read_targets("a, b:6000 ,tcp://c:7") == ["tcp://a:5555", "tcp://b:6000", "tcp://c:7"]
    nodes = tmp_path / "nodes.txt"
    nodes.write_text("# the rack\nnode1\n\n  node2:5555  # spare\nipc:///run/z.sock\n")
    assert read_targets(f"@{nodes}") == ["tcp://node1:5555", "tcp://node2:5555", "ipc:///run/z.sock"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [(",", "names no node"), ("a,a:5555", "node a twice"), ("a,ftp://b", "only tcp://"), ("a,b:0", "port")],
)
def test_read_targets_refuses_bad_lists(spec, message):
    with pytest.raises(EndpointError, match=message):
        read_targets(spec)


def test_read_targets_names_an_unreadable_file(tmp_path):
    with pytest.raises(LocalFileError, match="node list"):
        read_targets(f"@{tmp_path / 'missing.txt'}")


def test_node_label_is_the_host_and_the_port_only_when_not_the_default():
    assert node_label("tcp://10.0.0.5:5555") == "10.0.0.5"
    assert node_label("tcp://10.0.0.5:6000") == "10.0.0.5_6000"
    assert node_label("tcp://[fd00::1]:5555") == "fd00__1"
    assert node_label("ipc:///run/zfile/a.sock") == "run_zfile_a.sock"


def test_tree_digest_depends_on_names_and_digests_not_order():
    a = [("x", "blake3", b3(b"1")), ("y", "blake3", b3(b"2"))]
    assert tree_digest(a) == tree_digest(a[::-1])
    assert tree_digest(a) != tree_digest([("x", "blake3", b3(b"1")), ("z", "blake3", b3(b"2"))])
    assert tree_digest(a) != tree_digest([("x", "blake3", b3(b"2")), ("y", "blake3", b3(b"1"))])


@pytest.mark.slow
async def test_send_everywhere_and_gather_round_trip_with_one_node_missing(two_daemons, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "big.bin").write_bytes(os.urandom(3 << 20))
    (src / "sub" / "small.txt").write_bytes(b"small")
    dead = f"tcp://127.0.0.1:{free_port()}"
    # A refused connection fails at once, whatever the timeout; the live
    # nodes keep the default one (a commit on a loaded disk may take seconds).
    configs = [ClientConfig(d.endpoint) for d in two_daemons] + [ClientConfig(dead)]
    plan = plan_upload([src])
    moved: list[int] = []

    reports = await send_everywhere(configs, plan, compare=Compare.QUICK, progress=moved.append)

    assert [r.endpoint for r in reports] == [c.endpoint for c in configs]
    ok, missing = reports[:2], reports[2]
    expected = tree_digest([(name, "blake3", b3(Path(path).read_bytes())) for path, name, _ in plan.files])
    for report in ok:
        assert report.ok and report.files == 2 and report.unchanged == 0
        assert report.bytes == (3 << 20) + 5 and report.digest == expected
    assert not missing.ok and isinstance(missing.error, PeerUnreachable) and missing.digest is None
    assert dead in missing.reason()
    assert sum(moved) >= 2 * ((3 << 20) + 5)

    # A second send finds everything unchanged and still reports the tree's digest.
    again = await send_everywhere(configs[:2], plan)
    assert [(r.ok, r.unchanged, r.bytes, r.digest) for r in again] == [(True, 2, 0, expected)] * 2

    out = tmp_path / "out"
    got = await gather(configs, ["src/"], out)
    for report, daemon in zip(got[:2], two_daemons, strict=True):
        assert report.ok and report.files == 2 and report.digest == expected
        base = out / node_label(daemon.endpoint) / "src"
        assert (base / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
        assert (base / "sub" / "small.txt").read_bytes() == b"small"
    assert not got[2].ok and isinstance(got[2].error, PeerUnreachable)
    assert not (out / node_label(dead)).exists()


@pytest.mark.slow
async def test_gather_fails_only_the_node_that_lacks_a_name(two_daemons, tmp_path):
    f = tmp_path / "only-on-one.bin"
    f.write_bytes(b"abc")
    await send_everywhere([ClientConfig(two_daemons[0].endpoint)], plan_upload([f]))
    reports = await gather([ClientConfig(d.endpoint) for d in two_daemons], ["only-on-one.bin"], tmp_path / "out")
    assert reports[0].ok and reports[0].digest == b3(b"abc")
    # The node is up: the name it lacks fails as that file, not as the node.
    assert not reports[1].ok and reports[1].error is None
    [lacking] = reports[1].failed
    assert isinstance(lacking.error, RemoteError) and "no such file" in reports[1].reason()


@pytest.mark.slow
def test_cli_reports_every_node_and_exits_1_naming_the_failed_one(two_daemons, tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(1 << 20))
    dead = f"127.0.0.1:{free_port()}"
    nodes = tmp_path / "nodes.txt"
    nodes.write_text("".join(f"{d.endpoint}\n" for d in two_daemons) + f"{dead}\n")

    proc = zfile_cli("send", str(src), "--to", f"@{nodes}", check=False)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    digest = b3(src.read_bytes()).hex()
    for d in two_daemons:
        assert any(line.startswith(d.endpoint) and " ok " in line and digest in line for line in lines), lines
    assert any(line.startswith(f"tcp://{dead}") and "FAILED" in line for line in lines), lines
    assert f"zfile: error: tcp://{dead}: nothing accepts connections" in proc.stderr
    assert "2 of 3 node(s) done" in proc.stdout

    ok = ",".join(d.endpoint for d in two_daemons)
    proc = zfile_cli("get", "a.bin", "--from", ok, "-o", str(tmp_path / "out"), "--json", "-I")
    report = json.loads(proc.stdout)
    assert [r["result"] for r in report] == ["ok", "ok"]
    assert {r["digest"] for r in report} == {digest} and {r["bytes"] for r in report} == {1 << 20}
    for r in report:
        assert set(r) == {
            "endpoint",
            "node",
            "result",
            "files",
            "unchanged",
            "bytes",
            "seconds",
            "mb_per_s",
            "digest",
            "error",
        }
        assert (tmp_path / "out" / r["node"] / "a.bin").read_bytes() == src.read_bytes()


@pytest.mark.slow
def test_cli_refuses_a_bad_node_list_as_usage(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"a")
    proc = zfile_cli("send", str(src), "--to", "a,a", check=False)
    assert proc.returncode == 2 and "twice" in proc.stderr
    proc = zfile_cli("send", str(src), "--to", f"@{tmp_path / 'none.txt'}", check=False)
    assert proc.returncode == 2 and "node list" in proc.stderr
    proc = zfile_cli("ls", "--from", "a,b", check=False)
    assert proc.returncode == 2 and "one daemon" in proc.stderr


@pytest.mark.slow
def test_a_node_that_refuses_fails_alone_with_its_reason(two_daemons, tmp_path):
    small = start_daemon(tmp_path / "store-small", tmp_path / "small.log", "--max-file-size", "1000")
    try:
        src = tmp_path / "a.bin"
        src.write_bytes(os.urandom(300_000))
        nodes = [two_daemons[0].endpoint, small.endpoint, two_daemons[1].endpoint]
        proc = zfile_cli("send", str(src), "--to", ",".join(nodes), "--json", check=False)
    finally:
        assert small.stop() == 0
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert [r["result"] for r in report] == ["ok", "failed", "ok"]
    assert report[1]["files"] == 0 and report[1]["digest"] is None and "a.bin" in report[1]["error"]
    assert f"zfile: error: {small.endpoint}: a.bin: " in proc.stderr


@pytest.mark.slow
def test_json_with_one_daemon_is_a_one_node_report(two_daemons, tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    report = json.loads(zfile_cli("send", str(src), "--to", two_daemons[0].endpoint, "--json").stdout)
    assert [(r["endpoint"], r["result"], r["bytes"], r["digest"]) for r in report] == [
        (two_daemons[0].endpoint, "ok", 3, b3(b"abc").hex())
    ]
