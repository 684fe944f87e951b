"""The CLI's one error boundary: click's usage errors, configuration errors,
failed transfers and an output that cannot be written all end as one
``zfile: error:`` line and an exit code."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zfile.cli.boundary import EXIT_FAILED, EXIT_USAGE, exit_code
from zfile.errors import ConfigError, EndpointError, RemoteError, StoreError

from ..conftest import zfile_cli


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["send"], "Missing argument 'PATHS...'"),
        (["send", "/no/such/path"], "Invalid value for 'PATHS...'"),
        (["ls", "--from", "ftp://x"], "only tcp:// and ipc://"),
        (["nope"], "No such command 'nope'"),
        (["get", "x", "--timeout", "0"], "--timeout"),
    ],
)
def test_usage_errors_are_one_zfile_line_exit_2(args, says):
    res = zfile_cli(*args, check=False)
    assert res.returncode == EXIT_USAGE
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zfile: error: ") and says in lines[0], res.stderr
    assert "Traceback" not in res.stderr and "Usage:" not in res.stderr


def test_config_error_exits_2(tmp_path):
    bad = tmp_path / "z.toml"
    bad.write_text("[server]\nnonsense = 1\n")
    res = zfile_cli("serve", "--config", str(bad), "--check-config", check=False)
    assert res.returncode == EXIT_USAGE
    assert res.stderr.startswith("zfile: error: ") and "nonsense" in res.stderr


@pytest.mark.slow
def test_keygen_refusing_to_overwrite_exits_1(tmp_path):
    zfile_cli("keygen", "--out", str(tmp_path), "--name", "k")
    res = zfile_cli("keygen", "--out", str(tmp_path), "--name", "k", check=False)
    assert res.returncode == EXIT_FAILED and res.stderr.startswith("zfile: error: ") and "exists" in res.stderr


@pytest.mark.slow
def test_help_and_version_exit_0():
    assert "send" in zfile_cli("--help").stdout
    assert zfile_cli("--version").stdout.startswith("zfile, version ")


def test_exit_code_by_error_class():
    assert exit_code(ConfigError("x")) == exit_code(EndpointError("x")) == EXIT_USAGE
    assert exit_code(RemoteError("x")) == exit_code(StoreError("x")) == EXIT_FAILED


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_an_output_that_cannot_be_written_is_one_line_exit_1(daemon, tmp_path, unbuffered):
    # `> /dev/full` stands for a redirect onto a full disk, as `cat f > /dev/full` says "write error".
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(300_000))
    zfile_cli("send", "-q", str(src), "--to", daemon.endpoint)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    for args in (["ls"], ["ls", "--json"], ["stat", "f.bin"], ["cat", "f.bin"], ["ping"]):
        with open("/dev/full", "wb") as full:
            proc = subprocess.run(
                [sys.executable, "-m", "zfile", *args, "--from", daemon.endpoint],
                stdout=full,
                stderr=subprocess.PIPE,
                env=env,
                timeout=60,
            )
        assert (proc.returncode, proc.stderr.decode()) == (
            EXIT_FAILED,
            "zfile: error: cannot write the output: No space left on device\n",
        ), args
    # Written whole where the output has room, through the same guard.
    cat = subprocess.run(
        [sys.executable, "-m", "zfile", "cat", "f.bin", "--from", daemon.endpoint], capture_output=True, env=env
    )
    assert (cat.returncode, cat.stdout, cat.stderr) == (0, src.read_bytes(), b"")
