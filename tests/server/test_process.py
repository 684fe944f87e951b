"""The daemon's process set-up: its open-file limit raised to the hard one."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import free_port


def test_the_daemon_raises_its_soft_open_file_limit_to_the_hard_one(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard limit here ({hard}) leaves nothing to raise")
    want = min(hard, 1 << 20) if hard != resource.RLIM_INFINITY else 1 << 20
    log = tmp_path / "daemon.log"
    cmd = [
        sys.executable,
        "-m",
        "zfile",
        "serve",
        "--bind",
        f"tcp://127.0.0.1:{free_port()}",
        "--root",
        str(tmp_path / "s"),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
        )
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"raised the open-file limit from 256 to {want}" in log.read_text()
        limits = Path(f"/proc/{proc.pid}/limits").read_text().splitlines()
        [row] = [line for line in limits if line.startswith("Max open files")]
        assert row.split()[3] == str(want)  # the soft limit's column
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
