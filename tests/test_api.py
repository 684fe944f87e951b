"""The public face of the package: what ``zfile`` exports, what importing it
costs, and docs/api.md's examples, each run as a plain script against a fresh
daemon with its files compared byte for byte."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import zfile

from .conftest import start_daemon

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
# A python block, then the comment that says which files must be equal.
EXAMPLE = re.compile(r"```python\n(.*?)```\s*<!-- check\n(.*?)-->", re.S)


def examples() -> list:
    text = DOC.read_text()
    found = EXAMPLE.findall(text)
    assert found and len(found) == text.count("```python"), "every python block in docs/api.md needs a check"
    params = []
    for k, (code, check) in enumerate(found, 1):
        pairs = [tuple(side.strip() for side in line.split("==")) for line in check.strip().splitlines()]
        assert pairs and all(len(p) == 2 for p in pairs), check
        params.append(pytest.param(code, pairs, id=f"example-{k}"))
    return params


@pytest.mark.slow
@pytest.mark.parametrize("code, pairs", examples())
def test_doc_example_runs_and_moves_the_files(tmp_path, code, pairs):
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    work = tmp_path / "work"
    work.mkdir()
    try:
        script = work.parent / "example.py"
        script.write_text(code)
        env = {**os.environ, "ZFILE_SERVER": d.endpoint, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run(
            [sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=90
        )
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    finally:
        assert d.stop() == 0, d.log_text()

    def read(side: str) -> bytes:
        path = d.root / side.removeprefix("daemon:") if side.startswith("daemon:") else work / side
        assert path.is_file(), f"{side} is missing"
        return path.read_bytes()

    for left, right in pairs:
        assert read(left) == read(right), f"{left} differs from {right}"


def test_all_names_resolve():
    for name in zfile.__all__:
        assert getattr(zfile, name) is not None, name
    assert set(zfile.__all__) <= set(dir(zfile))
    assert issubclass(zfile.RemoteError, zfile.ZfileError) and issubclass(zfile.PeerTimeout, zfile.TransportError)
    with pytest.raises(AttributeError):
        zfile.Transfer  # noqa: B018 -- private names are not exported


def test_a_client_does_not_import_the_daemon():
    probe = (
        "import sys, zfile\n"
        "assert not [m for m in sys.modules if m.startswith('zfile.')], sorted(sys.modules)\n"
        "zfile.SyncClient, zfile.Client, zfile.ClientConfig, zfile.RemoteError, zfile.Entry, zfile.send_paths\n"
        "assert not [m for m in sys.modules if m.startswith('zfile.server')], sorted(sys.modules)\n"
        "print(zfile.__version__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == zfile.__version__


def test_a_client_never_refused_does_not_import_its_retry_policy(daemon, tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(b"x" * 5000)
    probe = (
        "import sys, zfile\n"
        f"with zfile.SyncClient(zfile.ClientConfig({daemon.endpoint!r})) as c:\n"
        f"    c.put({str(src)!r}, 'x.bin')\n"
        "    assert [e.name for e in c.list()] == ['x.bin']\n"
        "assert 'tenacity' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (daemon.root / "x.bin").read_bytes() == src.read_bytes()
