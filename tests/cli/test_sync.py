"""rsync-style options of `zfile send` and `zfile get` through the real CLI
against real daemons: --prefix, filters, -n/--dry-run, --delete, --json and
--bwlimit."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ..conftest import start_daemon, zfile_cli

pytestmark = pytest.mark.slow


def write(path: Path, data: bytes = b"data") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def listing(daemon) -> dict[str, tuple]:
    entries = json.loads(zfile_cli("ls", "-R", "--from", daemon.endpoint, "--json").stdout)
    return {e["name"]: (e["size"], e["mtime"], e["digest"], e["received"]) for e in entries}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, size, mtime in ns, and a link's target."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            target = os.readlink(path) if path.is_symlink() else None
            seen[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, target)
    return seen


def summary(res) -> str:
    return res.stdout.strip().splitlines()[-1]


def photos(root: Path) -> Path:
    write(root / "photos" / "a.jpg", b"a" * 10)
    write(root / "photos" / "b.log", b"b")
    write(root / "photos" / "keep.log", b"k")
    write(root / "photos" / "raw" / "c.cr2", b"c")
    write(root / "photos" / "sub" / "d.jpg", b"d" * 300_000)  # streamed, not inline
    return root / "photos"


def test_prefix_stores_under_a_directory_and_refuses_a_bad_one(daemon, tmp_path):
    src = photos(tmp_path)
    write(tmp_path / "alone.txt")
    zfile_cli("send", str(src), str(tmp_path / "alone.txt"), "--prefix", "datasets/", "--to", daemon.endpoint)
    zfile_cli("send", str(tmp_path / "alone.txt"), "--prefix", "other", "--to", daemon.endpoint)
    names = set(listing(daemon))
    assert "datasets/alone.txt" in names and "other/alone.txt" in names
    assert "datasets/photos/sub/d.jpg" in names and len(names) == 7
    assert (daemon.root / "datasets" / "photos" / "sub" / "d.jpg").read_bytes() == b"d" * 300_000
    for bad in ("../up", "/abs/", ".zfile"):
        res = zfile_cli("send", str(tmp_path / "alone.txt"), "--prefix", bad, "--to", daemon.endpoint, check=False)
        assert res.returncode == 2 and "--prefix" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert set(listing(daemon)) == names


def test_prefix_with_fan_out(tmp_path):
    nodes = [start_daemon(tmp_path / f"s{k}", tmp_path / f"d{k}.log") for k in range(2)]
    try:
        src = write(tmp_path / "model.ckpt", os.urandom(5000))
        to = ",".join(d.endpoint for d in nodes)
        res = zfile_cli("send", str(src), "--prefix", "runs/42/", "--to", to, "--json")
        assert [r["result"] for r in json.loads(res.stdout)] == ["ok", "ok"]
        for d in nodes:
            assert (d.root / "runs" / "42" / "model.ckpt").read_bytes() == src.read_bytes()
        zfile_cli("send", str(write(tmp_path / "notes.txt")), "--prefix", "runs/42", "--to", to)
        out = tmp_path / "out"
        zfile_cli("get", "runs/", "--from", to, "-o", str(out), "--exclude", "*.ckpt")
        got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        assert got == sorted(f"{d.endpoint.split('//')[1].replace(':', '_')}/runs/42/notes.txt" for d in nodes)
    finally:
        for d in nodes:
            assert d.stop() == 0


def test_send_filters_match_relative_to_each_tree(daemon, tmp_path):
    src = photos(tmp_path)
    rules = write(tmp_path / "rules", b"# raw files stay home\n/raw/\n")
    res = zfile_cli(
        "send", str(src), "--to", daemon.endpoint,
        "--exclude", "*.log", "--include", "keep.log", "--exclude-from", str(rules),
    )  # fmt: skip
    assert set(listing(daemon)) == {"photos/a.jpg", "photos/keep.log", "photos/sub/d.jpg"}
    assert summary(res).startswith("sent 3 file(s)") and "; 2 excluded" in summary(res)
    assert res.returncode == 0
    res = zfile_cli("send", str(src), "--to", daemon.endpoint, "--exclude-from", str(tmp_path / "none"), check=False)
    assert res.returncode == 2 and "cannot read the exclude file" in res.stderr


def test_get_filters_match_relative_to_the_prefix(daemon, tmp_path):
    zfile_cli("send", str(photos(tmp_path / "src")), "--to", daemon.endpoint)
    out = tmp_path / "out"
    res = zfile_cli(
        "get", "photos/", "--from", daemon.endpoint, "-o", str(out), "--exclude", "/sub", "--exclude", "*.log"
    )
    assert sorted(snapshot(out / "photos")) == ["a.jpg", "raw", "raw/c.cr2"]
    assert "; 3 excluded" in summary(res)


def test_files_from_sends_the_listed_paths_as_listed(daemon, tmp_path):
    src = tmp_path / "src"
    for rel in ("a.txt", "sub/b.txt", "sub/deep/c.txt", "left.txt"):
        write(src / rel, rel.encode())
    (tmp_path / "list.txt").write_text("# what to send\na.txt\n\n/sub/deep\n; a comment too\n")
    out = zfile_cli("send", "--files-from", "list.txt", "src", "-n", "--to", daemon.endpoint, cwd=tmp_path).stdout
    assert "would have sent 2 file(s)" in out and listing(daemon) == {}
    zfile_cli("send", "-q", "--files-from", "list.txt", "src", "--prefix", "p/", "--to", daemon.endpoint, cwd=tmp_path)
    assert sorted(listing(daemon)) == ["p/a.txt", "p/sub/deep/c.txt"]
    assert (daemon.root / "p" / "sub" / "deep" / "c.txt").read_bytes() == b"sub/deep/c.txt"
    # From stdin, NUL-ended, relative to the current directory, as `find -print0` writes them.
    listed = "./a.txt\0sub/b.txt\0"
    zfile_cli("send", "-q", "--files-from", "-", "-0", "--prefix", "q", "--to", daemon.endpoint, cwd=src, input=listed)
    assert sorted(n for n in listing(daemon) if n.startswith("q/")) == ["q/a.txt", "q/sub/b.txt"]
    refused = [
        (["--files-from", "list.txt", "src", "src"], 2, "--files-from takes one PATH at most"),
        (["--files-from", "list.txt", "src", "--delete"], 2, "without --delete or --name"),
        (["-0", "src"], 2, "-0/--from0 goes with --files-from"),
        (["--files-from", "empty.txt", "src"], 2, "empty.txt names no path to send"),
        (["--files-from", "missing.txt", "src"], 2, "cannot read missing.txt"),
        (["--files-from", "climb.txt", "src"], 1, "--files-from cannot store '../list.txt': it is not below src"),
    ]
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    (tmp_path / "climb.txt").write_text("../list.txt\n")
    before = listing(daemon)
    for args, code, said in refused:
        res = zfile_cli("send", *args, "--to", daemon.endpoint, check=False, cwd=tmp_path)
        assert (res.returncode, res.stdout) == (code, ""), (args, res.stderr)
        assert said in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    assert listing(daemon) == before


def test_a_dry_run_changes_nothing_on_either_side(daemon, tmp_path):
    src = photos(tmp_path / "src")
    zfile_cli("send", str(src), "--to", daemon.endpoint)
    zfile_cli("send", str(write(tmp_path / "other.txt")), "--to", daemon.endpoint)
    # The source moves on: one file changed, one new, one gone.
    write(src / "a.jpg", b"changed")
    write(src / "new.jpg", b"new")
    (src / "b.log").unlink()
    before_daemon, before_store, before_src = listing(daemon), snapshot(daemon.root), snapshot(src)

    res = zfile_cli("send", str(src), "--to", daemon.endpoint, "-n", "--delete")
    lines = res.stdout.splitlines()
    assert "send      photos/a.jpg  (7 bytes)" in lines and "send      photos/new.jpg  (3 bytes)" in lines
    assert "unchanged photos/sub/d.jpg" in lines and "delete    photos/b.log" in lines
    assert not any("other.txt" in line for line in lines)  # outside the tree named
    assert summary(res).startswith("dry run: would have sent 2 file(s)") and "1 deleted" in summary(res)

    out = tmp_path / "out"
    zfile_cli("get", "photos/", "--from", daemon.endpoint, "-o", str(out))
    write(out / "photos" / "stale.jpg")
    before_out = snapshot(out)
    res = zfile_cli("get", "photos/", "--from", daemon.endpoint, "-o", str(out), "-n", "--delete", "-I")
    assert "delete    " + str(out / "photos" / "stale.jpg") in res.stdout.splitlines()
    assert summary(res).startswith("dry run: would have fetched 5 file(s)")

    assert listing(daemon) == before_daemon and snapshot(daemon.root) == before_store
    assert snapshot(src) == before_src and snapshot(out) == before_out
    assert "dir=in" not in daemon.log_text().split("other.txt")[-1]  # no upload after the last real one


def test_get_delete_removes_only_what_it_should(daemon, tmp_path):
    zfile_cli("send", str(photos(tmp_path / "src")), "--to", daemon.endpoint)
    out = tmp_path / "out"
    zfile_cli("get", "photos/", "--from", daemon.endpoint, "-o", str(out))
    tree = out / "photos"
    write(tree / "stale.jpg")
    write(tree / "old" / "deeper" / "gone.jpg")
    write(tree / "notes.keep")  # excluded below: stays
    write(tree / ".x.zfile-part")  # a download's temp file: stays
    precious = write(tmp_path / "precious" / "p.jpg")
    (tree / "link").symlink_to(precious)
    (tree / "linkdir").symlink_to(precious.parent)
    write(out / "beside.jpg")  # outside the tree named
    res = zfile_cli("get", "photos/", "--from", daemon.endpoint, "-o", str(out), "--delete", "--exclude", "*.keep")
    assert res.returncode == 0 and "; 2 deleted; 0 failed" in summary(res), res.stdout
    assert not (tree / "stale.jpg").exists() and not (tree / "old").exists()
    for kept in ("notes.keep", ".x.zfile-part", "a.jpg", "sub/d.jpg", "raw/c.cr2"):
        assert (tree / kept).is_file(), kept
    assert (tree / "link").is_symlink() and (tree / "linkdir").is_symlink() and precious.is_file()
    assert (out / "beside.jpg").is_file()
    # What the source lacks but --delete leaves is said, not skipped in silence.
    said = [line for line in res.stderr.splitlines() if "--delete left" in line]
    why = "a symbolic link, which zfile never writes"
    assert said == [f"zfile: --delete left '{tree / n}': {why}" for n in ("link", "linkdir")]


def test_a_failed_run_deletes_nothing_and_says_so(daemon, tmp_path):
    zfile_cli("send", str(photos(tmp_path / "src")), "--to", daemon.endpoint)
    out = tmp_path / "out"
    stale = write(out / "photos" / "stale.jpg")
    res = zfile_cli("get", "photos/", "nothing/", "--from", daemon.endpoint, "-o", str(out), "--delete", check=False)
    assert res.returncode == 1
    assert "nothing was deleted, as 1 file(s) failed" in res.stderr and stale.is_file()
    assert "; 0 deleted; 1 failed" in summary(res)
    # A dry run says the same of the run it stands for.
    res = zfile_cli(
        "get", "photos/", "nothing/", "--from", daemon.endpoint, "-o", str(out), "-n", "--delete", check=False
    )
    assert res.returncode == 1 and "nothing would be deleted, as 1 file(s) failed" in res.stderr
    assert "zfile: error: nothing/: no such file" in res.stderr and "; 0 deleted; 1 failed" in summary(res)
    # A destination that cannot be written fails a file: nothing is deleted either.
    shutil.rmtree(out / "photos" / "sub")
    write(out / "photos" / "sub")  # a file where the directory sub/ must go
    res = zfile_cli("get", "photos/", "--from", daemon.endpoint, "-o", str(out), "--delete", check=False)
    assert res.returncode == 1 and "nothing was deleted" in res.stderr and stale.is_file()


def test_json_for_one_daemon_has_counts_and_each_files_result(daemon, tmp_path):
    src = photos(tmp_path / "src")
    res = zfile_cli("send", str(src), "--to", daemon.endpoint, "--json", "--exclude", "raw/")
    [report] = json.loads(res.stdout)
    assert {k: report[k] for k in ("result", "sent", "unchanged", "deleted", "excluded", "failed", "files")} == {
        "result": "ok", "sent": 4, "unchanged": 0, "deleted": 0, "excluded": 1, "failed": 0, "files": 4,
    }  # fmt: skip
    assert report["bytes"] == 300_012 and report["dry_run"] is False and report["endpoint"] == daemon.endpoint
    by_name = {r["name"]: r for r in report["results"]}
    assert by_name["photos/raw"]["result"] == "excluded"
    assert by_name["photos/sub/d.jpg"]["result"] == "sent" and by_name["photos/sub/d.jpg"]["size"] == 300_000
    assert by_name["photos/sub/d.jpg"]["path"] == str(src / "sub" / "d.jpg")

    out = tmp_path / "out"
    res = zfile_cli("get", "photos/", "nope", "--from", daemon.endpoint, "-o", str(out), "--json", check=False)
    [report] = json.loads(res.stdout)
    assert res.returncode == 1 and report["result"] == "failed" and report["fetched"] == 4 and report["failed"] == 1
    assert {r["result"] for r in report["results"]} == {"fetched", "failed"}
    res = zfile_cli("get", "photos/", "--from", daemon.endpoint, "-o", str(out), "--json")
    [report] = json.loads(res.stdout)
    assert (report["fetched"], report["unchanged"], report["bytes"]) == (0, 4, 0) and report["digest"]


def test_bwlimit_moves_the_same_bytes_and_refuses_a_bad_rate(daemon, tmp_path):
    big = write(tmp_path / "big.bin", os.urandom(3 << 20))
    zfile_cli("send", str(big), "--to", daemon.endpoint, "--bwlimit", "200M")
    out = tmp_path / "out"
    zfile_cli("get", "big.bin", "--from", daemon.endpoint, "-o", str(out), "--bwlimit", "200M")
    assert (out / "big.bin").read_bytes() == big.read_bytes() == (daemon.root / "big.bin").read_bytes()
    res = zfile_cli("send", str(big), "--to", daemon.endpoint, "--bwlimit", "fast", check=False)
    assert res.returncode == 2 and "500K" in res.stderr


def test_dry_run_and_delete_work_per_node(tmp_path):
    nodes = [start_daemon(tmp_path / f"s{k}", tmp_path / f"d{k}.log") for k in range(2)]
    try:
        e0, e1 = (d.endpoint for d in nodes)
        src = photos(tmp_path / "src")
        shutil.rmtree(src / "sub")  # small files only: they go star, so the daemons need no --forward
        zfile_cli("send", str(src), "--to", e0)
        zfile_cli("send", str(write(tmp_path / "other" / "photos" / "old.txt").parent), "--to", e1)
        (src / "b.log").unlink()
        before = [listing(d) for d in nodes]
        res = zfile_cli("send", str(src), "-n", "--delete", "--to", f"{e0},{e1}")
        lines = res.stdout.splitlines()
        for line in (
            f"{e0}  unchanged photos/a.jpg",
            f"{e0}  delete    photos/b.log",
            f"{e1}  send      photos/a.jpg  (10 bytes)",
            f"{e1}  delete    photos/old.txt",
        ):
            assert line in lines, res.stdout
        dry = [line for line in lines if "dry run:" in line]
        assert dry[0].startswith(f"{e0}  dry run: would have sent 0 file(s)") and "; 3 unchanged; 1 deleted;" in dry[0]
        assert dry[1].startswith(f"{e1}  dry run: would have sent 3 file(s)") and "; 0 unchanged; 1 deleted;" in dry[1]
        reports = json.loads(zfile_cli("send", str(src), "-n", "--delete", "--to", f"{e0},{e1}", "--json").stdout)
        assert [(r["endpoint"], r["dry_run"], r["sent"], r["deleted"]) for r in reports] == [
            (e0, True, 0, 1),
            (e1, True, 3, 1),
        ]
        assert [listing(d) for d in nodes] == before  # a dry run changes nothing
        res = zfile_cli("send", str(src), "--delete", "--to", f"{e0},{e1}", "--json")
        assert [(r["result"], r["deleted"], r["delete_error"]) for r in json.loads(res.stdout)] == [("ok", 1, None)] * 2
        for d in nodes:
            assert set(listing(d)) == {"photos/a.jpg", "photos/keep.log", "photos/raw/c.cr2"}
        res = zfile_cli("send", str(src), "--delete", "--to", f"{e0},{e1}")
        assert [line.endswith("(3 unchanged)  (0 deleted)") for line in res.stdout.splitlines()[:2]] == [True] * 2
        # A node that cannot be reached is an error of its own; the other is still shown.
        res = zfile_cli("send", str(src), "-n", "--to", f"{e0},127.0.0.1:1", "--timeout", "1", check=False)
        assert res.returncode == 1 and "zfile: error: tcp://127.0.0.1:1: " in res.stderr, res.stderr
        assert f"{e0}  unchanged photos/a.jpg" in res.stdout.splitlines()
        # A node where a file failed deletes nothing; the other still does.
        nodes.append(start_daemon(tmp_path / "s2", tmp_path / "d2.log", "--max-file-size", "5"))
        e2 = nodes[2].endpoint
        zfile_cli("send", str(write(tmp_path / "other" / "photos" / "keep.log").parent), "--to", f"{e0},{e2}")
        zfile_cli("send", str(write(tmp_path / "other" / "photos" / "gone.txt").parent), "--to", f"{e0},{e2}")
        res = zfile_cli("send", str(src), "--delete", "--to", f"{e0},{e2}", "--json", check=False)
        assert res.returncode == 1
        assert f"zfile: --delete: {e2}: nothing was deleted, as its files did not all arrive" in res.stderr
        assert [(r["result"], r["deleted"]) for r in json.loads(res.stdout)] == [("ok", 2), ("failed", 0)]
        assert "photos/gone.txt" not in listing(nodes[0]) and "photos/gone.txt" in listing(nodes[2])
    finally:
        for d in nodes:
            assert d.stop() == 0


def test_send_delete_removes_only_what_the_tree_no_longer_has(daemon, tmp_path):
    src = photos(tmp_path / "src")
    zfile_cli("send", str(src), "--prefix", "ds", "--to", daemon.endpoint)
    outside = write(tmp_path / "photos-2" / "x.jpg")
    zfile_cli("send", str(outside.parent), "--prefix", "ds", "--to", daemon.endpoint)  # ds/photos-2/: a sibling
    zfile_cli("send", str(write(tmp_path / "top.txt")), "--prefix", "ds", "--to", daemon.endpoint)
    (src / "b.log").unlink()
    shutil.rmtree(src / "raw")
    (src / "keep.log").unlink()
    (src / "keep.log").symlink_to("a.jpg")  # send skips the link, but the tree still has keep.log
    (src / "a.jpg").unlink()
    res = zfile_cli(
        "send", str(src), "--prefix", "ds/", "--to", daemon.endpoint, "--delete", "--exclude", "/raw/", check=False
    )  # fmt: skip
    assert res.returncode == 1 and "skipped" in res.stderr  # the link, as always
    assert "; 2 deleted; 0 failed" in summary(res), res.stdout
    assert set(listing(daemon)) == {
        "ds/photos/keep.log", "ds/photos/raw/c.cr2", "ds/photos/sub/d.jpg", "ds/photos-2/x.jpg", "ds/top.txt",
    }  # fmt: skip


def test_a_failed_send_deletes_nothing(tmp_path):
    small = start_daemon(tmp_path / "store", tmp_path / "d.log", "--max-file-size", "100000")
    try:
        src = photos(tmp_path / "src")
        shutil.rmtree(src / "sub")
        zfile_cli("send", str(src), "--to", small.endpoint)
        before = set(listing(small))
        (src / "b.log").unlink()
        write(src / "huge.bin", os.urandom(200_000))  # over the daemon's --max-file-size
        res = zfile_cli("send", str(src), "--to", small.endpoint, "--delete", check=False)
        assert res.returncode == 1 and "nothing was deleted, as 1 file(s) failed" in res.stderr
        assert set(listing(small)) == before and "photos/b.log" in before
        # A directory whose content cannot be known (its name is not UTF-8) stops --delete too.
        (src / "huge.bin").unlink()
        write(Path(os.fsdecode(bytes(src) + b"/d\xe9j\xe0")) / "x.jpg")
        res = zfile_cli("send", str(src), "--to", small.endpoint, "--delete", check=False)
        assert res.returncode == 1 and "nothing was deleted, as" in res.stderr and "could not be read" in res.stderr
        assert "photos/b.log" in listing(small)
    finally:
        assert small.stop() == 0
