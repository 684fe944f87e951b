"""What `zfile send` makes of a tree: names that collide, what it skips and
why, names that are not UTF-8; through the real CLI against a real daemon."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest

from zfile.client.plan import plan_upload
from zfile.errors import NameCollision, Skipped

from ..conftest import free_port, make_late, tmpfs_at, zfile_cli


def stored(daemon) -> set[str]:
    return {e["name"] for e in json.loads(zfile_cli("ls", "-R", "--from", daemon.endpoint, "--json").stdout)}


def write(path: Path, data: bytes = b"data") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.slow
def test_two_paths_stored_under_one_name_are_refused_before_anything_is_sent(daemon, tmp_path):
    write(tmp_path / "a" / "x.txt", b"from a")
    write(tmp_path / "b" / "x.txt", b"from b")
    write(tmp_path / "first.txt")
    res = zfile_cli("send", "first.txt", "a/x.txt", "b/x.txt", "--to", daemon.endpoint, check=False, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert line.startswith("zfile: error: ") and "'a/x.txt'" in line and "'b/x.txt'" in line and "--relative" in line
    assert "Traceback" not in res.stderr
    assert stored(daemon) == set()


@pytest.mark.slow
def test_relative_stores_each_path_as_given(daemon, tmp_path):
    write(tmp_path / "a" / "x.txt", b"from a")
    write(tmp_path / "b" / "x.txt", b"from b")
    write(tmp_path / "tree" / "sub" / "y.txt")
    zfile_cli("send", "-R", "a/x.txt", "./b/x.txt", "tree/sub", "--to", daemon.endpoint, cwd=tmp_path)
    assert stored(daemon) == {"a/x.txt", "b/x.txt", "tree/sub/y.txt"}
    assert (daemon.root / "b" / "x.txt").read_bytes() == b"from b"


@pytest.mark.slow
def test_relative_refuses_a_path_that_climbs_out(daemon, tmp_path):
    write(tmp_path / "x.txt")
    (tmp_path / "here").mkdir()
    res = zfile_cli("send", "-R", "../x.txt", "--to", daemon.endpoint, check=False, cwd=tmp_path / "here")
    assert res.returncode == 1
    assert "--relative cannot store '../x.txt'" in res.stderr and "Traceback" not in res.stderr


def odd_tree(root: Path) -> None:
    """A tree with one of each kind of entry zfile does not store as a file."""
    write(root / "keep.txt", b"kept")
    write(root / "sub" / "deep.txt", b"deep")
    (root / "empty").mkdir()
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    sock.close()
    (root / "link-to-file").symlink_to("keep.txt")
    (root / "link-to-dir").symlink_to("sub")
    (root / "dangling").symlink_to("nowhere")
    (root / "sub" / "loop").symlink_to("..")
    write(Path(os.fsdecode(bytes(root) + b"/caf\xe9.txt")), b"latin-1 name")


@pytest.mark.slow
def test_a_tree_reports_each_entry_it_skips_and_exits_1(daemon, tmp_path):
    odd_tree(tmp_path / "t")
    res = zfile_cli("send", str(tmp_path / "t"), "--to", daemon.endpoint, check=False)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert stored(daemon) == {"t/keep.txt", "t/sub/deep.txt"}
    lines = res.stderr.strip().splitlines()
    why = {line.split("'")[1].rsplit("/", 1)[-1]: line for line in lines}
    assert set(why) == {"empty", "fifo", "sock", "link-to-file", "link-to-dir", "dangling", "loop", "caf\\xe9.txt"}
    assert all(line.startswith("zfile: skipped '") for line in lines), lines
    assert "empty directory" in why["empty"]
    assert "FIFO" in why["fifo"] and "socket" in why["sock"]
    assert "-L/--copy-links" in why["link-to-file"] and "-L/--copy-links" in why["loop"]
    assert "dangling symbolic link" in why["dangling"]
    assert "not valid UTF-8" in why["caf\\xe9.txt"]
    assert "sent 2 file(s)" in res.stdout and "; 8 skipped" in res.stdout


@pytest.mark.slow
def test_copy_links_follows_links_but_never_a_loop(daemon, tmp_path):
    odd_tree(tmp_path / "t")
    res = zfile_cli("send", "-L", str(tmp_path / "t"), "--to", daemon.endpoint, check=False)
    assert res.returncode == 1, res.stderr
    assert stored(daemon) == {"t/keep.txt", "t/sub/deep.txt", "t/link-to-file", "t/link-to-dir/deep.txt"}
    assert (daemon.root / "t" / "link-to-file").read_bytes() == b"kept"
    loops = [line for line in res.stderr.splitlines() if "loop" in line]
    assert len(loops) == 2 and all("symbolic link loop" in line for line in loops), res.stderr
    assert "; 7 skipped" in res.stdout


@pytest.mark.slow
def test_a_file_named_in_bytes_that_are_not_utf8_is_refused_by_name(daemon, tmp_path):
    bad = write(Path(os.fsdecode(bytes(tmp_path) + b"/\xff\xfe.bin")))
    good = write(tmp_path / "good.bin")
    res = zfile_cli("send", os.fsdecode(bad), str(good), "--to", daemon.endpoint, check=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "\\xff\\xfe.bin': the name is not valid UTF-8" in res.stderr
    assert stored(daemon) == {"good.bin"}


def test_an_unreadable_directory_is_skipped_with_its_reason(tmp_path, monkeypatch):
    write(tmp_path / "t" / "ok.txt")
    write(tmp_path / "t" / "locked" / "secret.txt")
    real = os.scandir

    # Tests may run as root, who reads every directory: refuse this one by hand.
    def scandir(path=None):
        if isinstance(path, str | Path) and Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real() if path is None else real(path)

    monkeypatch.setattr("zfile.client.plan.os.scandir", scandir)
    plan = plan_upload([tmp_path / "t"])
    assert [name for _, name, _ in plan.files] == ["t/ok.txt"]
    [skip] = plan.skipped
    assert skip.name.endswith("/t/locked") and isinstance(skip.error, Skipped)
    assert str(skip.error) == "cannot read the directory: Permission denied"


def test_collisions_are_found_inside_trees_too(tmp_path):
    write(tmp_path / "one" / "d" / "x")
    write(tmp_path / "two" / "d" / "x")
    with pytest.raises(NameCollision, match="would both be stored as 'd/x'"):
        plan_upload([tmp_path / "one" / "d", tmp_path / "two" / "d"])


@pytest.mark.slow
@pytest.mark.parametrize("reachable", [True, False])
def test_a_collision_found_by_the_walk_is_the_error_whether_or_not_the_daemon_answers(daemon, tmp_path, reachable):
    # The walk runs while the client connects: its error is the one said, and nothing is sent.
    write(tmp_path / "one" / "d" / "x")
    write(tmp_path / "two" / "d" / "x")
    to = daemon.endpoint if reachable else f"tcp://127.0.0.1:{free_port()}"
    paths = [str(tmp_path / "one" / "d"), str(tmp_path / "two" / "d")]
    res = zfile_cli("send", *paths, "--to", to, "--timeout", "3", check=False)
    assert res.returncode == 2, res.stderr
    assert "would both be stored as 'd/x'" in res.stderr and "Traceback" not in res.stderr
    assert "nothing was sent" in res.stderr
    if reachable:
        assert zfile_cli("ls", "-R", "--from", daemon.endpoint).stdout == ""


# -- get ---------------------------------------------------------------------


@pytest.mark.slow
def test_get_fetches_what_exists_and_reports_each_missing_name(daemon, tmp_path):
    zfile_cli("send", str(write(tmp_path / "a.txt", b"here")), "--to", daemon.endpoint)
    out = tmp_path / "out"
    res = zfile_cli("get", "nope.bin", "a.txt", "gone/", "--from", daemon.endpoint, "-o", str(out), check=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert (out / "a.txt").read_bytes() == b"here"
    errors = res.stderr.strip().splitlines()
    assert errors == [
        "zfile: error: nope.bin: no such file or directory on the daemon",
        "zfile: error: gone/: no such file or directory on the daemon",
    ]
    assert "fetched 1 file(s)" in res.stdout and "; 2 failed" in res.stdout


@pytest.mark.slow
def test_a_downloads_temp_files_are_never_sent_nor_fetched(daemon, tmp_path):
    # What an interrupted `get` of big.bin leaves beside its destination.
    out = tmp_path / "out"
    write(out / "kept.txt", b"a user's file")
    write(out / ".big.bin.zfile-part", b"half")
    write(out / ".big.bin.zfile-part.json", b'{"name": "big.bin"}')
    res = zfile_cli("send", str(out), "--to", daemon.endpoint, check=False)
    assert res.returncode == 1
    assert stored(daemon) == {"out/kept.txt"}
    assert res.stderr.count("temp file, kept for `zfile get` to resume") == 2, res.stderr
    assert "sent 1 file(s)" in res.stdout and "; 2 skipped" in res.stdout

    # A stored file named like one would be taken for a partial when fetched.
    zfile_cli("send", "-R", "out/.big.bin.zfile-part", "--to", daemon.endpoint, cwd=tmp_path)
    back = tmp_path / "back"
    res = zfile_cli("get", "out/", "--from", daemon.endpoint, "-o", str(back), check=False)
    assert res.returncode == 1
    assert sorted(p.name for p in (back / "out").iterdir()) == ["kept.txt"]
    assert "zfile: skipped 'out/.big.bin.zfile-part': its name is that of a download's temp file" in res.stderr
    assert "fetched 1 file(s)" in res.stdout and "; 1 skipped" in res.stdout


def test_get_help_says_the_temp_files_are_kept_for_resume():
    text = " ".join(zfile_cli("get", "--help").stdout.split())
    assert ".NAME.zfile-part" in text and "the same command resumes" in text


def test_the_same_file_named_twice_is_sent_once(tmp_path):
    f = write(tmp_path / "x.txt")
    plan = plan_upload([f, tmp_path / "." / "x.txt"])
    assert [name for _, name, _ in plan.files] == ["x.txt"]


@pytest.mark.slow
def test_a_full_local_disk_stops_a_download_with_one_line(daemon, tmp_path):
    """`get` of a tree into a 4 MiB tmpfs: one line says the disk is full
    and how many files were not fetched; every file under its final name is
    whole, and the large file cut short keeps its partial to resume from."""
    tree = tmp_path / "src" / "tree"
    for i in range(4):  # streamed: over the client's inline size
        write(tree / f"big{i}.bin", os.urandom(1536 << 10))
    for i in range(300):  # fetched many to a message
        write(tree / "small" / f"s{i:03}.bin", os.urandom(4096))
    zfile_cli("send", str(tree), "--to", daemon.endpoint)
    with tmpfs_at(tmp_path / "out") as out:
        res = zfile_cli("get", "tree/", "--from", daemon.endpoint, "-o", str(out), check=False)
        assert res.returncode == 1, res.stderr
        errors = [line for line in res.stderr.splitlines() if line.startswith("zfile: error:")]
        assert len(errors) == 1, res.stderr  # one line, not one per file
        assert "No space left on device" in errors[0] and "not fetched" in errors[0], errors
        fetched, failed = map(int, re.search(r"fetched (\d+) file\(s\).*; (\d+) failed", res.stdout).groups())
        assert fetched + failed == 304 and 0 < fetched < 304, res.stdout
        finals = [p for p in out.rglob("*") if p.is_file() and "zfile-part" not in p.name]
        assert len(finals) == fetched
        for path in finals:
            assert path.read_bytes() == (tree / path.relative_to(out / "tree")).read_bytes(), path
        assert [p for p in out.rglob("*.zfile-part")] != []  # cut short, kept for a resume


@pytest.mark.slow
def test_a_file_whose_mtime_zfile_cannot_keep_is_skipped_and_the_tree_goes_on(daemon, tmp_path):
    write(tmp_path / "t" / "old.txt", b"old")
    os.utime(tmp_path / "t" / "old.txt", ns=(0, -305_121_599_876_543_211))  # 1960, to the nanosecond
    late = write(tmp_path / "t" / "late.txt", b"late")
    make_late(late)
    res = zfile_cli("send", "t", "--to", daemon.endpoint, check=False, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert res.stderr.splitlines() == [
        "zfile: skipped 't/late.txt': its mtime, 2446-05-10T22:38:55Z, is after 2262-04-11T23:47:16Z, "
        "the latest zfile keeps (nanoseconds in 64 bits); set it with touch(1) to send it"
    ]
    assert "sent 1 file(s)" in res.stdout and "1 skipped" in res.stdout
    [entry] = json.loads(zfile_cli("ls", "-R", "--json", "--from", daemon.endpoint).stdout)
    assert (entry["name"], entry["mtime_ns"]) == ("t/old.txt", -305_121_599_876_543_211)
