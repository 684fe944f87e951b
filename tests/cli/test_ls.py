"""`zfile ls`: one level as ls(1) shows a directory, -R for every file,
sizes as ls -h shows them, and --json at the same depth."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest

from zfile.cli.listing import Directory, human_size, list_prefix, ls_json, ls_line, one_level

from ..conftest import zfile_cli, zfile_into


def test_human_sizes_are_powers_of_1024_as_ls_shows_them():
    sizes = [0, 1023, 1024, 1536, 10 * 1024, 20 * 1024**2, int(1.5 * 1024**3), 5 * 1024**5]
    assert [human_size(n) for n in sizes] == ["0", "1023", "1.0K", "1.5K", "10K", "20M", "1.5G", "5.0P"]


@pytest.mark.slow
def test_ls_human_prints_short_sizes(daemon, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (3 << 20))
    zfile_cli("send", str(big), "--to", daemon.endpoint)
    [line] = zfile_cli("ls", "--human", "--from", daemon.endpoint).stdout.splitlines()
    assert line.split()[0] == "3.0M" and line.endswith("  big.bin")
    [line] = zfile_cli("ls", "--from", daemon.endpoint).stdout.splitlines()
    assert line.split()[0] == "3,145,728"


def _entry(name: str, size: int = 1, mtime_ns: int = 0):
    from zfile.protocol.events import Entry

    return Entry(name, size, mtime_ns, 0o644, "blake3", b"\1" * 32, 0.0)


async def _level(names: list[str], prefix: str) -> list[tuple[str, int]]:
    """``ls PREFIX``'s items over a sorted flat listing of ``names`` (as the
    daemon's LIST gives it for ``list_prefix(PREFIX)``): (name, files) with
    files -1 for a file."""
    want = list_prefix(prefix, recursive=False)

    async def flat():
        for name in sorted(names):
            if name.startswith(want):
                yield _entry(name)

    return [(i.name, i.files if isinstance(i, Directory) else -1) async for i in one_level(flat(), prefix)]


TREE = ["top.txt", "ds/a.bin", "ds/2025/x", "ds/2025/sub/y", "ds/2024/z", "ds.txt", "ds2/q", "ds-b/r"]


async def test_one_level_folds_subdirectories_and_keeps_out_names_that_only_start_alike():
    assert await _level(TREE, "") == [("ds-b/", 1), ("ds.txt", -1), ("ds/", 4), ("ds2/", 1), ("top.txt", -1)]
    inside = [("ds/2024/", 1), ("ds/2025/", 2), ("ds/a.bin", -1)]
    assert await _level(TREE, "ds") == inside
    assert await _level(TREE, "ds/") == inside
    assert await _level(TREE, "ds/2025") == [("ds/2025/sub/", 1), ("ds/2025/x", -1)]
    assert await _level(TREE, "/") == await _level(TREE, "")


async def test_one_level_of_a_file_name_is_that_file_and_of_nothing_is_empty():
    assert await _level(TREE, "top.txt") == [("top.txt", -1)]
    assert await _level(TREE, "nope") == []
    assert await _level(TREE, "ds/2025/x") == [("ds/2025/x", -1)]


async def test_a_directory_counts_files_and_bytes_below_it_and_has_their_newest_mtime():
    async def flat():
        yield _entry("d/a", 10, 5)
        yield _entry("d/e/b", 20, 9)
        yield _entry("d/e/c", 30, 7)

    [a, e] = [i async for i in one_level(flat(), "d")]
    assert a.name == "d/a" and isinstance(e, Directory)
    assert (e.name, e.files, e.size, e.mtime_ns) == ("d/e/", 2, 50, 9)
    assert ls_json(e) == {
        "name": "d/e/",
        "type": "dir",
        "files": 2,
        "size": 50,
        "mtime": "1970-01-01T00:00:00+00:00",
        "mtime_ns": 9,
    }
    assert ls_json(a)["type"] == "file" and ls_json(a)["digest"] == "01" * 32
    line = ls_line(e)
    assert line.startswith(" " * 14 + "  ") and line.endswith("  2 files       d/e/")
    assert ls_line(e, human=True).startswith(" " * 6 + "  ")


@pytest.mark.slow
def test_ls_lists_one_level_and_R_everything(daemon, tmp_path):
    src = tmp_path / "src"
    for name in ("top.txt", "ds/a.bin", "ds/2025/x", "ds/2025/sub/y", "ds2/q"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"x" * 2000)
    zfile_cli("send", "-q", "-R", "top.txt", "ds", "ds2", "--to", daemon.endpoint, cwd=src)
    ep = ("--from", daemon.endpoint)

    def names(*args: str) -> list[str]:
        return [line.split()[-1] for line in zfile_cli("ls", *args, *ep).stdout.splitlines()]

    assert names() == ["ds/", "ds2/", "top.txt"]
    assert names("ds") == names("ds/") == ["ds/2025/", "ds/a.bin"]
    assert names("-R") == ["ds/2025/sub/y", "ds/2025/x", "ds/a.bin", "ds2/q", "top.txt"]
    assert names("-R", "ds/") == ["ds/2025/sub/y", "ds/2025/x", "ds/a.bin"]
    [dir_line, file_line] = zfile_cli("ls", "ds", *ep).stdout.splitlines()
    assert dir_line.split()[2:] == ["2", "files", "ds/2025/"] and dir_line.startswith(" " * 14)
    assert file_line.split()[0] == "2,000"
    assert zfile_cli("ls", "ds", "--human", *ep).stdout.splitlines()[1].split()[0] == "2.0K"
    listed = json.loads(zfile_cli("ls", "ds", "--json", *ep).stdout)
    assert [(e["name"], e["type"]) for e in listed] == [("ds/2025/", "dir"), ("ds/a.bin", "file")]
    assert listed[0]["files"] == 2 and listed[0]["size"] == 4000
    assert listed[1]["size"] == 2000 and len(listed[1]["digest"]) == 64
    everything = json.loads(zfile_cli("ls", "-R", "--json", *ep).stdout)
    assert {e["type"] for e in everything} == {"file"} and len(everything) == 5
    # A prefix with nothing under it fails as ls(1) fails on a missing path; "ds" and "ds2" are no "d".
    for args, sentence in (
        (("nope",), "'nope' is not in the store, nor is anything under it"),
        (("--json", "nope/"), "'nope' is not in the store, nor is anything under it"),
        (("d",), "'d' is not in the store, nor is anything under it"),
        (("-R", "dz"), "no stored name starts with 'dz'"),
    ):
        proc = zfile_cli("ls", *args, *ep, check=False)
        assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", f"zfile: error: {sentence}\n"), args
    assert names("-R", "d") == names("-R")[:-1]


def test_ls_of_an_empty_store_is_empty_not_an_error(daemon):
    assert zfile_cli("ls", "--from", daemon.endpoint).stdout == ""
    assert zfile_cli("ls", "/", "--from", daemon.endpoint).stdout == ""
    assert json.loads(zfile_cli("ls", "-R", "--json", "--from", daemon.endpoint).stdout) == []


@pytest.mark.slow
def test_sizes_are_human_on_a_terminal_and_exact_bytes_in_a_pipe(daemon, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (3 << 20))
    zfile_cli("send", str(big), "--to", daemon.endpoint)
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "zfile", "ls", "--from", daemon.endpoint],
            stdout=secondary,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        os.close(secondary)
        secondary = -1
        out = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert proc.returncode == 0, proc.stderr
    [line] = out.decode().splitlines()
    assert line.split()[0] == "3.0M" and line.endswith("big.bin")
    assert zfile_cli("ls", "--from", daemon.endpoint).stdout.split()[0] == "3,145,728"
    assert zfile_cli("ls", "--bytes", "--from", daemon.endpoint).stdout.split()[0] == "3,145,728"


@pytest.mark.slow
def test_ls_whose_reader_leaves_early_exits_141_quietly(daemon, tmp_path):
    """`zfile ls -R | head -n 1` as `ls | head`: exit 141 (128 + SIGPIPE), nothing on stderr."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(2000):  # a listing larger than a pipe's buffer (64 KiB)
        (tree / f"file-with-a-longish-name-{i:05}.txt").write_bytes(b"x")
    zfile_cli("send", "-q", str(tree), "--to", daemon.endpoint)
    for flags in ("-R", "-R --json"):
        piped = zfile_into(f"ls {flags} --from {daemon.endpoint}", "head -n 1")
        assert (piped.returncode, piped.stderr) == (141, b""), (flags, piped.stderr)
        assert len(piped.stdout.splitlines()) == 1
