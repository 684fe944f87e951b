"""Quick check, as rsync does it: files the other side already holds with the
same size and mtime (or, with -c, the same digest) are skipped and counted as
unchanged; -I transfers everything.  Bytes on the wire are counted from the
daemon's transfer log lines."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ..conftest import Daemon, zfile_cli
from ..rawpeer import MTIME_NS, make_file

pytestmark = pytest.mark.slow

KiB = 1 << 10


def received(d: Daemon) -> dict[str, int]:
    """Bytes the daemon received per logged transfer name (a batch of small
    files is logged as "FIRST and N more"), from its log lines so far."""
    got: dict[str, int] = {}
    for m in re.finditer(r"dir=in name='([^']*)' bytes=(\d+) .* result=ok", d.log_text()):
        got[m.group(1)] = got.get(m.group(1), 0) + int(m.group(2))
    return got


def tree(root: Path) -> Path:
    make_file(root / "data" / "a.bin", 5 * KiB)
    make_file(root / "data" / "b.bin", 7 * KiB)
    make_file(root / "data" / "sub" / "big.bin", 3 << 20)
    return root / "data"


def summary(res) -> str:
    return res.stdout.strip().splitlines()[-1]


def test_resend_of_an_unchanged_tree_sends_nothing(daemon, tmp_path):
    src = tree(tmp_path)
    first = zfile_cli("send", str(src), "--to", daemon.endpoint)
    assert summary(first).startswith("sent 3 file(s)")
    before = received(daemon)
    assert sum(before.values()) == 5 * KiB + 7 * KiB + (3 << 20)
    again = zfile_cli("send", str(src), "--to", daemon.endpoint)
    assert summary(again).startswith("sent 0 file(s)") and "3 unchanged" in summary(again)
    assert received(daemon) == before  # not a byte on the wire


def test_a_changed_mtime_or_size_sends_only_that_file(daemon, tmp_path):
    src = tree(tmp_path)
    zfile_cli("send", str(src), "--to", daemon.endpoint)
    before = received(daemon)
    os.utime(src / "a.bin", ns=(MTIME_NS + 10**9, MTIME_NS + 10**9))
    res = zfile_cli("send", str(src), "--to", daemon.endpoint)
    assert "sent 1 file(s)" in summary(res) and "2 unchanged" in summary(res)
    after = received(daemon)
    assert sum(after.values()) == sum(before.values()) + 5 * KiB  # that file's bytes, no more
    assert after["data/sub/big.bin"] == before["data/sub/big.bin"]
    make_file(src / "b.bin", 8 * KiB)  # same mtime, another size
    res = zfile_cli("send", str(src), "--to", daemon.endpoint)
    assert "sent 1 file(s)" in summary(res)
    assert (daemon.root / "data" / "b.bin").read_bytes() == (src / "b.bin").read_bytes()


def test_checksum_catches_a_change_that_keeps_size_and_mtime(daemon, tmp_path):
    src = tree(tmp_path)
    zfile_cli("send", str(src), "--to", daemon.endpoint)
    make_file(src / "a.bin", 5 * KiB)  # new bytes, same size, same mtime
    quick = zfile_cli("send", str(src), "--to", daemon.endpoint)
    assert "3 unchanged" in summary(quick)  # the quick check cannot see it
    assert (daemon.root / "data" / "a.bin").read_bytes() != (src / "a.bin").read_bytes()
    res = zfile_cli("send", str(src), "-c", "--to", daemon.endpoint)
    assert "sent 1 file(s)" in summary(res) and "2 unchanged" in summary(res)
    assert (daemon.root / "data" / "a.bin").read_bytes() == (src / "a.bin").read_bytes()


def test_ignore_times_sends_everything(daemon, tmp_path):
    src = tree(tmp_path)
    zfile_cli("send", str(src), "--to", daemon.endpoint)
    res = zfile_cli("send", str(src), "-I", "--to", daemon.endpoint)
    assert summary(res).startswith("sent 3 file(s)") and "; 0 unchanged;" in summary(res)


def test_get_skips_what_is_already_local_and_checksum_refetches(daemon, tmp_path):
    src = tree(tmp_path)
    zfile_cli("send", str(src), "--to", daemon.endpoint)
    out = tmp_path / "back"
    first = zfile_cli("get", "data/", "--from", daemon.endpoint, "-o", str(out))
    assert summary(first).startswith("fetched 3 file(s)")
    again = zfile_cli("get", "data/", "--from", daemon.endpoint, "-o", str(out))
    assert summary(again).startswith("fetched 0 file(s)") and "3 unchanged" in summary(again)
    local = out / "data" / "b.bin"
    st = local.stat()
    local.write_bytes(os.urandom(st.st_size))
    os.utime(local, ns=(st.st_atime_ns, st.st_mtime_ns))
    quick = zfile_cli("get", "data/", "--from", daemon.endpoint, "-o", str(out))
    assert "3 unchanged" in summary(quick)
    res = zfile_cli("get", "data/", "-c", "--from", daemon.endpoint, "-o", str(out))
    assert "fetched 1 file(s)" in summary(res) and "2 unchanged" in summary(res)
    assert local.read_bytes() == (src / "b.bin").read_bytes()


def test_checksum_and_ignore_times_together_is_a_usage_error(tmp_path):
    f = make_file(tmp_path / "x.bin", 10)
    res = zfile_cli("send", str(f), "-c", "-I", check=False)
    assert res.returncode == 2 and "contradict" in res.stderr
