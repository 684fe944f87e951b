"""The CLI's one error boundary: click's usage errors, configuration errors and
failed transfers all end as one ``zfile: error:`` line and an exit code."""

from __future__ import annotations

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
