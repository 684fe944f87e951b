"""End to end: ``zfile rm``, ``mv``, ``stat``, ``cat`` and ``ping`` against a real daemon, with each store backend
(a local directory; an S3 bucket on a real SeaweedFS, tests/seaweed.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import start_daemon, zfile_cli, zfile_into
from ..rawpeer import MiB, digest_of, make_file

pytestmark = pytest.mark.slow


@pytest.fixture(params=["local", "s3"])
def node(request, tmp_path: Path):
    """A daemon on a fresh store of each backend."""
    extra: tuple[str, ...] = ()
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        extra = ("--store", s3.location(), "--s3-endpoint", s3.endpoint)
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", *extra)
    yield d
    assert d.stop() == 0, d.log_text()


def send_tree(node, tmp_path: Path, names: list[str]) -> None:
    src = tmp_path / "src"
    for name in names:
        make_file(src / name, 10)
    zfile_cli("send", "-q", "-R", *names, "--to", node.endpoint, cwd=src)


def ls_json(node, prefix: str = "") -> list[dict]:
    return json.loads(zfile_cli("ls", "-R", prefix, "--from", node.endpoint, "--json").stdout)


def names_on(node, prefix: str = "") -> list[str]:
    return [e["name"] for e in json.loads(zfile_cli("ls", "-R", prefix, "--from", node.endpoint, "--json").stdout)]


def test_rm_removes_names_and_a_missing_one_is_an_error(node, tmp_path):
    send_tree(node, tmp_path, ["a.txt", "b.txt", "c.txt"])
    proc = zfile_cli("rm", "a.txt", "nope.txt", "c.txt", "--from", node.endpoint, check=False)
    assert proc.returncode == 1, proc
    assert "zfile: error: nope.txt: 'nope.txt' is not in the store" in proc.stderr
    assert proc.stdout.strip() == "removed 2 file(s)"
    assert names_on(node) == ["b.txt"]


def test_rm_r_removes_a_tree_and_dry_run_changes_nothing(node, tmp_path):
    send_tree(node, tmp_path, ["ds/2025/a", "ds/2025/sub/b", "ds/2025x", "ds/2024/c"])
    dry = zfile_cli("rm", "-rn", "ds/2025/", "--from", node.endpoint)
    assert dry.stdout.splitlines() == ["would remove ds/2025/a", "would remove ds/2025/sub/b", "would remove 2 file(s)"]
    assert len(names_on(node)) == 4
    zfile_cli("rm", "-r", "ds/2025", "--from", node.endpoint)  # no slash: the tree ds/2025/, not ds/2025x
    assert names_on(node) == ["ds/2024/c", "ds/2025x"]


def test_rm_without_r_refuses_a_prefix_and_rm_r_of_nothing_is_an_error(node, tmp_path):
    send_tree(node, tmp_path, ["keep/x"])
    proc = zfile_cli("rm", "keep/", "--from", node.endpoint, check=False)
    assert proc.returncode == 1 and "keep/: is a prefix; use -r" in proc.stderr
    proc = zfile_cli("rm", "keep", "gone", "--from", node.endpoint, check=False)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "zfile: error: keep: 'keep' is a directory in the store; use rm -r keep/ to remove the files under it",
        "zfile: error: gone: 'gone' is not in the store",
    ]
    proc = zfile_cli("rm", "-r", "empty/", "--from", node.endpoint, check=False)
    assert proc.returncode == 1 and "empty/: nothing is stored under it" in proc.stderr
    proc = zfile_cli("rm", "-r", "/", "--from", node.endpoint, check=False)
    assert proc.returncode == 1 and "removing every file at once is refused" in proc.stderr
    assert names_on(node) == ["keep/x"]


def test_rm_of_hostile_names_leaves_the_store_alone(node, tmp_path):
    send_tree(node, tmp_path, ["k"])
    proc = zfile_cli("rm", "../k", ".zfile/catalog.db", "-r", "../", "--from", node.endpoint, check=False)
    assert proc.returncode == 1, proc
    assert proc.stderr.count("zfile: error:") == 3, proc.stderr
    assert "'..' component" in proc.stderr
    assert names_on(node) == ["k"]


def test_mv_renames_refuses_to_replace_without_force(node, tmp_path):
    send_tree(node, tmp_path, ["old.bin", "taken.bin"])
    proc = zfile_cli("mv", "old.bin", "taken.bin", "--from", node.endpoint, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "zfile: error: 'taken.bin' already exists in the store; -f/--force replaces it"
    assert names_on(node) == ["old.bin", "taken.bin"]
    assert (
        zfile_cli("mv", "-v", "old.bin", "dir/", "--from", node.endpoint).stdout == "renamed old.bin -> dir/old.bin\n"
    )
    zfile_cli("mv", "-f", "dir/old.bin", "taken.bin", "--from", node.endpoint)
    assert names_on(node) == ["taken.bin"]
    back = tmp_path / "back"
    zfile_cli("get", "taken.bin", "--from", node.endpoint, "-o", str(back))
    assert (back / "taken.bin").read_bytes() == (tmp_path / "src" / "old.bin").read_bytes()
    # As for mv(1), a NEW that is a directory in the store takes the file in, slash or not.
    send_tree(node, tmp_path, ["old.bin", "d/e/f.bin"])
    assert zfile_cli("mv", "-v", "old.bin", "d/e", "--from", node.endpoint).stdout == "renamed old.bin -> d/e/old.bin\n"
    assert names_on(node) == ["d/e/f.bin", "d/e/old.bin", "taken.bin"]


def test_mv_refuses_hostile_names_and_missing_files(node, tmp_path):
    send_tree(node, tmp_path, ["k"])
    for new in ("../escape", ".zfile/x", "/abs"):
        proc = zfile_cli("mv", "k", new, "--from", node.endpoint, check=False)
        assert proc.returncode == 1 and proc.stderr.startswith("zfile: error: the file name"), proc.stderr
    proc = zfile_cli("mv", "missing", "x", "--from", node.endpoint, check=False)
    assert proc.returncode == 1 and "'missing' is not in the store" in proc.stderr
    assert names_on(node) == ["k"]


def test_cat_and_stat_of_a_directory_say_so(node, tmp_path):
    send_tree(node, tmp_path, ["d/a", "d/e/b"])
    proc = zfile_cli("cat", "d/e", "--from", node.endpoint, check=False)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == "zfile: error: 'd/e' is a directory in the store; cat prints one stored file\n"
    proc = zfile_cli("stat", "d", "d/a", "nope", "--from", node.endpoint, check=False)
    assert proc.returncode == 1 and "name: d/a" in proc.stdout
    assert proc.stderr.splitlines() == [
        "zfile: error: d: 'd' is a directory in the store; ls lists what is under it",
        "zfile: error: nope: 'nope' is not in the store",
    ]


def test_mv_of_a_directory_moves_its_files_as_mv_does(node, tmp_path):
    send_tree(node, tmp_path, ["d/a", "d/e/b", "keep/k"])
    digests = {e["name"]: e["digest"] for e in ls_json(node)}
    # To a new name: d/... becomes x/...; with or without the slash.
    assert zfile_cli("mv", "d", "x", "--from", node.endpoint).stdout == "moved 2 file(s)\n"
    assert names_on(node) == ["keep/k", "x/a", "x/e/b"]
    # Into a directory that holds files: x/... becomes keep/x/..., as mv(1) moves into a directory.
    out = zfile_cli("mv", "-v", "x/", "keep", "--from", node.endpoint).stdout
    assert out.splitlines() == ["renamed x/a -> keep/x/a", "renamed x/e/b -> keep/x/e/b", "moved 2 file(s)"]
    moved = {e["name"]: e["digest"] for e in ls_json(node)}
    assert moved == {"keep/k": digests["keep/k"], "keep/x/a": digests["d/a"], "keep/x/e/b": digests["d/e/b"]}
    # Refusals: nothing moves.
    send_tree(node, tmp_path, ["y/a"])
    for args, says in (
        (["keep/x/", "keep/x/deeper"], "cannot move 'keep/x/' into itself, 'keep/x/deeper/'"),
        (["nope/", "z/"], "nothing is stored under 'nope/'"),
        (["y", "keep/k"], "cannot move the directory 'y/' onto the stored file 'keep/k'"),
    ):
        proc = zfile_cli("mv", *args, "--from", node.endpoint, check=False)
        assert (proc.returncode, proc.stderr) == (1, f"zfile: error: {says}\n"), args
    send_tree(node, tmp_path, ["z/x/a"])
    proc = zfile_cli("mv", "y/", "z/x/", "--from", node.endpoint, check=False)  # z/x/ holds files: into it, as z/x/y/
    assert proc.returncode == 0 and names_on(node, "z/") == ["z/x/a", "z/x/y/a"]
    send_tree(node, tmp_path, ["y/a", "w/y/a"])
    proc = zfile_cli("mv", "y", "w", "--from", node.endpoint, check=False)
    assert (proc.returncode, proc.stderr) == (
        1,
        "zfile: error: 'w/y/' already holds files; -f/--force moves into it, replacing files of the same names\n",
    )
    assert "y/a" in names_on(node)
    # -f merges, replacing the file of the same name.
    assert zfile_cli("mv", "-f", "y", "w", "--from", node.endpoint).stdout == "moved 1 file(s)\n"
    assert "y/a" not in names_on(node) and "w/y/a" in names_on(node)


def test_mv_of_a_directory_reports_each_file_it_could_not_move(tmp_path):
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:
        send_tree(d, tmp_path, ["s/a", "s/b", "s/c"])
        send_tree(d, tmp_path, ["t/s/b/deeper"])  # where s/b would go (into t/, as t/s/b), a directory holds files
        proc = zfile_cli("mv", "-f", "s/", "t/", "--from", d.endpoint, check=False)
        assert proc.returncode == 1
        assert proc.stdout == "moved 2 file(s); 1 failed\n"
        assert proc.stderr.splitlines() == [
            "zfile: error: s/b: 't/s/b' is a directory in the store",
            f"zfile: once the files refused can move, zfile mv -f -T s/ t/s/ --from {d.endpoint} moves them",
        ]
        assert names_on(d) == ["s/b", "t/s/a", "t/s/b/deeper", "t/s/c"]  # the one refused stays where it was
        # That command, once the way is clear, finishes the move where it began, not into t/s/.
        zfile_cli("rm", "-r", "t/s/b/", "--from", d.endpoint)
        assert zfile_cli("mv", "-f", "-T", "s/", "t/s/", "--from", d.endpoint).stdout == "moved 1 file(s)\n"
        assert names_on(d) == ["t/s/a", "t/s/b", "t/s/c"]
    finally:
        assert d.stop() == 0


def test_a_daemon_killed_during_a_tree_move_loses_no_file(tmp_path):
    """kill -9 while the renames of a tree commit in groups: after the
    restart each file is listed exactly once, under its old name or its new
    one, with its bytes; the same command with -f -T then moves the rest."""
    import signal
    import time

    names = [f"big/d{i % 8}/f{i:04d}" for i in range(1200)]
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:
        send_tree(d, tmp_path, names)
        digests = {e["name"]: e["digest"] for e in ls_json(d)}
        mv = subprocess.Popen(
            [sys.executable, "-m", "zfile", "mv", "big/", "moved/", "--from", d.endpoint],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while d.log_text().count("moved name=") < 300 and time.monotonic() < deadline:
            time.sleep(0.005)  # until a quarter of the renames are logged
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(timeout=30)
        mv.communicate(timeout=120)
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
    again = start_daemon(tmp_path / "store", tmp_path / "daemon.log", endpoint=d.endpoint)
    try:
        listed = {e["name"]: e["digest"] for e in ls_json(again)}
        assert len(listed) == len(names)
        for name in names:
            new = "moved/" + name[len("big/") :]
            assert (name in listed) != (new in listed), name
            assert listed.get(name, listed.get(new)) == digests[name]
        left = [n for n in names if n in listed]
        assert len(left) < len(names)  # the kill came after some renames
        if left:
            zfile_cli("mv", "-f", "-T", "big/", "moved/", "--from", again.endpoint)
        assert sorted(names_on(again)) == sorted("moved/" + n[len("big/") :] for n in names)
        # Every file read back, each verified against its digest on the way.
        zfile_cli("get", "moved/", "-q", "-o", str(tmp_path / "out"), "--from", again.endpoint)
        assert sum(1 for p in (tmp_path / "out").rglob("*") if p.is_file()) == len(names)
    finally:
        assert again.stop() == 0, again.log_text()


def test_stat_shows_each_field_and_json(node, tmp_path):
    send_tree(node, tmp_path, ["s/a.bin"])
    src = tmp_path / "src" / "s" / "a.bin"
    src_stat = src.stat()
    proc = zfile_cli("stat", "s/a.bin", "nope", "--from", node.endpoint, check=False)
    assert proc.returncode == 1 and "zfile: error: nope: 'nope' is not in the store" in proc.stderr
    lines = dict(line.strip().split(": ", 1) for line in proc.stdout.splitlines())
    assert lines["name"] == "s/a.bin" and lines["size"] == "10 bytes"
    assert lines["mtime"] == f"2020-09-13T12:26:40.123456789Z ({src_stat.st_mtime_ns} ns)"
    assert lines["mode"] == f"{src_stat.st_mode & 0o777:04o}"
    assert lines["digest"] == f"blake3 {digest_of(src).hex()}"
    assert lines["recv"].endswith("Z") and lines["peer"] == "127.0.0.1"
    [entry] = json.loads(zfile_cli("stat", "s/a.bin", "--json", "--from", node.endpoint).stdout)
    assert (entry["name"], entry["size"], entry["mtime_ns"], entry["digest"], entry["algo"]) == (
        "s/a.bin",
        10,
        src_stat.st_mtime_ns,
        digest_of(src).hex(),
        "blake3",
    )


def test_cat_streams_the_file_and_stops_quietly_when_the_pipe_closes(node, tmp_path):
    src = make_file(tmp_path / "big.bin", 5 * MiB + 7)
    zfile_cli("send", "-q", str(src), "--to", node.endpoint)
    whole = subprocess.run(
        [sys.executable, "-m", "zfile", "cat", "big.bin", "--from", node.endpoint], capture_output=True, timeout=120
    )
    assert whole.returncode == 0 and whole.stderr == b"", whole.stderr
    assert whole.stdout == src.read_bytes()
    # The reader leaves after 10 bytes: exit 141 (128 + SIGPIPE) as cat's, and nothing on stderr.
    piped = zfile_into(f"cat big.bin --from {node.endpoint}", "head -c 10")
    assert (piped.returncode, piped.stdout, piped.stderr) == (141, src.read_bytes()[:10], b"")
    proc = zfile_cli("cat", "missing.bin", "--from", node.endpoint, check=False)
    assert proc.returncode == 1 and proc.stderr == "zfile: error: 'missing.bin' is not in the store\n"


def test_get_to_dash_writes_one_file_to_stdout_as_cat_does(node, tmp_path):
    src = make_file(tmp_path / "big.bin", 3 * MiB + 5)
    send_tree(node, tmp_path, ["d/a"])
    zfile_cli("send", "-q", str(src), "--to", node.endpoint)
    whole = subprocess.run(
        [sys.executable, "-m", "zfile", "get", "big.bin", "--from", node.endpoint, "-o", "-"],
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert (whole.returncode, whole.stderr) == (0, b"") and whole.stdout == src.read_bytes()
    assert not (tmp_path / "-").exists()  # not a directory named -
    piped = zfile_into(f"get big.bin --from {node.endpoint} -o -", "head -c 10")
    assert (piped.returncode, piped.stdout, piped.stderr) == (141, src.read_bytes()[:10], b"")
    proc = zfile_cli("get", "d", "--from", node.endpoint, "-o", "-", check=False)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == "zfile: error: 'd' is a directory in the store; get -o - prints one stored file\n"
    for extra in (["d/"], ["big.bin", "d/a"], ["big.bin", "-c"], ["big.bin", "--delete"], ["big.bin", "--json"]):
        proc = zfile_cli("get", *extra, "--from", node.endpoint, "-o", "-", check=False, cwd=tmp_path)
        assert (proc.returncode, proc.stdout) == (2, ""), extra
        assert "-o - (stdout) takes one stored file from one daemon" in proc.stderr
    # ./- is a directory named -, as with any program that reads - as stdout.
    zfile_cli("get", "-q", "d/a", "--from", node.endpoint, "-o", "./-", cwd=tmp_path)
    assert (tmp_path / "-" / "a").is_file()


def test_cat_of_a_file_corrupted_on_the_daemons_disk_exits_1(tmp_path):
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:
        src = make_file(tmp_path / "c.bin", 3 * MiB)
        zfile_cli("send", "-q", str(src), "--to", d.endpoint)
        with open(d.root / "c.bin", "r+b") as f:  # one byte flipped, the size kept
            f.seek(2 * MiB)
            byte = f.read(1)
            f.seek(2 * MiB)
            f.write(bytes([byte[0] ^ 0xFF]))
        proc = subprocess.run(
            [sys.executable, "-m", "zfile", "cat", "c.bin", "--from", d.endpoint], capture_output=True, timeout=120
        )
        assert proc.returncode == 1
        assert len(proc.stdout) == 3 * MiB and proc.stdout != src.read_bytes()
        assert proc.stderr.decode() == (
            f"zfile: error: c.bin: the {3 * MiB} bytes received do not match the stored blake3 digest; "
            "the bytes already written to stdout cannot be taken back\n"
        )
    finally:
        assert d.stop() == 0, d.log_text()


def test_ping_reports_the_daemon_and_its_backend(node):
    from zfile import __version__
    from zfile.protocol.codec import PROTOCOL_VERSION

    status = json.loads(zfile_cli("ping", node.endpoint, "--json").stdout)
    assert set(status) == {
        "endpoint",
        "version",
        "protocol",
        "uptime_s",
        "free_bytes",
        "transfers",
        "curve",
        "read_only",
        "rtt_ms",
    }
    assert (status["endpoint"], status["version"], status["protocol"]) == (node.endpoint, __version__, PROTOCOL_VERSION)
    assert status["curve"] is False and status["transfers"] == 0 and status["uptime_s"] > 0 and status["rtt_ms"] > 0
    if "--store" in node.proc.args:
        assert status["free_bytes"] is None  # an object store has no free-space figure
        assert "free: no limit (object store)" in zfile_cli("ping", "--from", node.endpoint).stdout
    else:
        assert 0 < status["free_bytes"] <= os.statvfs(node.root).f_blocks * os.statvfs(node.root).f_frsize
    text = zfile_cli("ping", "--from", node.endpoint).stdout
    if "--store" not in node.proc.args:  # exact bytes, then as ls -h shows them (the figure moves between calls)
        assert re.search(r"^     free: \d+ bytes \(\d+(\.\d)?[KMGTP]?\)$", text, re.M), text
    assert [line.split(":")[0].strip() for line in text.splitlines()] == [
        "endpoint",
        "version",
        "uptime",
        "free",
        "transfers",
        "curve",
        "access",
        "rtt",
    ]
    assert "access: read-write" in text and status["read_only"] is False


def test_ping_says_curve_on_and_a_dead_endpoint_is_an_error(tmp_path):
    from zfile.transport import curve as auth

    server_public, server_secret = auth.generate_keypair(tmp_path / "keys", "server")
    client_public, client_secret = auth.generate_keypair(tmp_path / "keys", "me")
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    (authorized / "me.key").write_bytes(client_public.read_bytes())
    serve = ("--secret-key", str(server_secret), "--authorized-keys", str(authorized))
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", *serve)
    try:
        keys = ("--server-key", str(server_public), "--client-key", str(client_secret))
        status = json.loads(zfile_cli("ping", d.endpoint, *keys, "--json").stdout)
        assert status["curve"] is True
    finally:
        assert d.stop() == 0, d.log_text()
    dead = zfile_cli("ping", d.endpoint, "--timeout", "1", check=False)
    assert dead.returncode == 1 and dead.stderr.startswith("zfile: error: "), dead.stderr


def test_send_stdin_stores_a_stream_of_unknown_size(node, tmp_path):
    data = os.urandom(9 * MiB + 123)  # more than one S3 part, more than the credit window
    proc = subprocess.run(
        [sys.executable, "-m", "zfile", "send", "-", "--name", "builds/build.tar", "--to", node.endpoint],
        input=data,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith("sent builds/build.tar, 9.4 MB in ")
    [entry] = json.loads(zfile_cli("stat", "builds/build.tar", "--json", "--from", node.endpoint).stdout)
    assert entry["size"] == len(data) and entry["mode"] == "0644"
    back = subprocess.run(
        [sys.executable, "-m", "zfile", "cat", "builds/build.tar", "--from", node.endpoint],
        capture_output=True,
        timeout=120,
    )
    assert back.returncode == 0 and back.stdout == data
    refused = zfile_cli("send", "-", "--name", "builds/build.tar", "--no-clobber", "--to", node.endpoint, check=False)
    assert refused.returncode == 1 and "already exists" in refused.stderr
    for args in (["-"], ["-", str(tmp_path)], ["--name", "x", str(tmp_path)]):
        usage = zfile_cli("send", *args, "--to", node.endpoint, check=False)
        assert usage.returncode == 2 and "needs --name NAME" in usage.stderr, usage.stderr
    # Started with stdin closed (`<&-`): a sentence, exit 1, nothing stored.
    closed = subprocess.run(
        f"exec {sys.executable} -m zfile send - --name closed.bin --to {node.endpoint} <&-",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (closed.returncode, closed.stderr) == (1, "zfile: error: - (stdin) is closed: there is nothing to send\n")
    assert "closed.bin" not in names_on(node)
