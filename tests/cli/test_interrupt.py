"""Ctrl-C through the real CLI: exit 130, what was done, and a re-run that resumes.

Each test stops the daemon (SIGSTOP) once the big file is under way, so the
client is caught mid-transfer however fast the machine is."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from zfile.client.partfiles import part_paths

from ..conftest import start_daemon, zfile_cli
from ..rawpeer import MiB, make_file, partials

RESUMING = re.compile(r"^zfile: resuming big\.bin at (\d+) bytes$", re.M)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert proc.poll() is None, f"the client ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} within 60 s"
        time.sleep(0.01)


def default_sigint() -> None:
    """In the CLI's child before exec: SIGINT as a terminal's foreground job has
    it.  A shell without job control starts a background job (``./scripts/test &``)
    with SIGINT ignored, children inherit that, and a CLI started so rightly
    ignores Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(args: list[str], ready: Callable[[], bool], daemon) -> subprocess.CompletedProcess:
    """Run the CLI, hold the daemon once ``ready()``, press Ctrl-C, and return how the CLI ended."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "zfile", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=default_sigint,
    )
    try:
        wait_for(ready, proc, "transfer under way")
        daemon.proc.send_signal(signal.SIGSTOP)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.fixture
def d(tmp_path):
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    yield daemon
    assert daemon.stop() == 0, daemon.log_text()


@pytest.mark.slow
def test_ctrl_c_during_get_exits_130_and_the_same_get_resumes(d, tmp_path):
    src = tmp_path / "src"
    make_file(src / "small.txt", 100)
    big = make_file(src / "big.bin", 300 * MiB)
    zfile_cli("send", str(src / "small.txt"), str(big), "--to", d.endpoint, "-q")
    out = tmp_path / "out"
    part, state = part_paths(out / "big.bin")
    args = ["get", "small.txt", "big.bin", "--from", d.endpoint, "-o", str(out)]

    res = interrupt(args, lambda: (out / "small.txt").exists() and part.exists() and part.stat().st_size > 0, d)
    assert res.returncode == 130, res
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "zfile: interrupted: 1 of 2 file(s) done; run the same command again to resume the rest"
    )
    assert part.exists() and state.exists()  # kept for the re-run

    again = zfile_cli(*args)
    [offset] = RESUMING.findall(again.stderr)
    assert 0 < int(offset) < big.stat().st_size
    assert (out / "big.bin").read_bytes() == big.read_bytes()
    assert not part.exists() and not state.exists()
    assert "resuming" not in zfile_cli(*args, "-q").stderr  # --quiet says nothing


@pytest.mark.slow
def test_ctrl_c_during_send_exits_130_and_sending_again_resumes(d, tmp_path):
    small = make_file(tmp_path / "small.txt", 100)
    big = make_file(tmp_path / "big.bin", 300 * MiB)
    args = ["send", str(small), str(big), "--to", d.endpoint]

    def under_way() -> bool:
        return (d.root / "small.txt").exists() and any(n > 0 for n in partials(d.root).values())

    res = interrupt(args, under_way, d)
    assert res.returncode == 130, res
    assert "Traceback" not in res.stderr
    # small.txt may be stored with its answer still on the way when the daemon is held.
    assert re.fullmatch(
        r"zfile: interrupted: [01] of 2 file\(s\) done; run the same command again to resume the rest",
        res.stderr.strip().splitlines()[-1],
    ), res.stderr

    again = zfile_cli(*args)
    [offset] = RESUMING.findall(again.stderr)
    assert 0 < int(offset) < big.stat().st_size
    assert (d.root / "big.bin").read_bytes() == big.read_bytes()


@pytest.mark.slow
def test_ctrl_c_during_send_stdin_exits_130_and_stores_nothing(d):
    # The producer writes 3 MiB, then keeps the pipe open: the client's read-ahead waits on it.
    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zfile", "send", "-", "--name", "piped.bin", "--to", d.endpoint],
        stdin=r,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    os.close(r)
    try:
        os.write(w, os.urandom(3 * MiB))
        wait_for(lambda: sum(partials(d.root).values()) >= 2 * MiB, proc, "the stream in the daemon's partial")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(w)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Fatal Python error" not in err and "zfile: interrupted" in err
    deadline = time.monotonic() + 10  # the daemon drops the stream once CANCEL arrives
    while partials(d.root) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert partials(d.root) == {}
    assert not (d.root / "piped.bin").exists()
