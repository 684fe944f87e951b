"""The CLI against a read-only daemon (``zfile serve --read-only``), end to
end: send, rm and mv fail with a sentence saying why and exit 1; get and ls
go on."""

from __future__ import annotations

import json

import pytest

from ..conftest import start_daemon, zfile_cli


@pytest.fixture
def read_only(tmp_path, daemon):
    """A read-only daemon over the store that ``daemon`` filled with ``d/a.txt``."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.txt").write_bytes(b"hello")
    zfile_cli("send", "-q", "-R", "d", "--to", daemon.endpoint, cwd=src)
    assert daemon.stop() == 0
    d = start_daemon(daemon.root, tmp_path / "ro.log", "--read-only")
    yield d
    assert d.stop() == 0, d.log_text()


def _fails_read_only(*args: str) -> None:
    proc = zfile_cli(*args, check=False)
    assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("zfile: error: ") and "is read-only" in proc.stderr, (args, proc.stderr)
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_changes_fail_clearly_and_reads_go_on(read_only, tmp_path):
    new = tmp_path / "new.txt"
    new.write_bytes(b"new")
    _fails_read_only("send", str(new), "--to", read_only.endpoint)
    _fails_read_only("rm", "d/a.txt", "--from", read_only.endpoint)
    _fails_read_only("rm", "-r", "d/", "--from", read_only.endpoint)
    _fails_read_only("mv", "d/a.txt", "d/b.txt", "--from", read_only.endpoint)
    listed = json.loads(zfile_cli("ls", "-R", "--json", "--from", read_only.endpoint).stdout)
    assert [e["name"] for e in listed] == ["d/a.txt"]
    zfile_cli("get", "d/a.txt", "--from", read_only.endpoint, "-o", str(tmp_path / "back"))
    assert (tmp_path / "back" / "a.txt").read_bytes() == b"hello"
    assert "access: read-only" in zfile_cli("ping", read_only.endpoint).stdout
    assert json.loads(zfile_cli("ping", read_only.endpoint, "--json").stdout)["read_only"] is True
    assert read_only.proc.poll() is None
