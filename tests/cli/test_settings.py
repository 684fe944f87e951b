"""Configuration: flags > ZFILE_* environment > TOML file > defaults, and errors
that name the key, variable or file at fault."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from zfile.cli import settings
from zfile.errors import ConfigError
from zfile.server.config import ServerConfig

from ..conftest import zfile_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "zfile.toml.example"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path):
    cfg = write(
        tmp_path / "z.toml",
        '[server]\nmax_transfers = 7\nidle_timeout = 9\nroot = "/from/file"\ngrace_period = 3.5\n',
    )
    env = {"ZFILE_IDLE_TIMEOUT": "11.5", "ZFILE_ROOT": "/from/env", "ZFILE_INSECURE": "yes"}
    config = settings.server_config({"root": "/from/flag", "grace_period": None}, cfg, env)
    assert config.root == "/from/flag"  # flag beats env and file
    assert config.idle_timeout == 11.5  # env beats file
    assert config.max_transfers == 7 and config.grace_period == 3.5  # file beats defaults; None = flag not given
    assert config.insecure is True
    assert config.window == ServerConfig().window  # default
    assert isinstance(config.idle_timeout, float)


def test_read_only_from_flag_env_and_file(tmp_path):
    assert ServerConfig().read_only is False
    cfg = write(tmp_path / "z.toml", "[server]\nread_only = true\n")
    assert settings.server_config({}, cfg, {}).read_only is True
    assert settings.server_config({}, None, {"ZFILE_READ_ONLY": "1"}).read_only is True
    assert settings.server_config({"read_only": True}, None, {}).read_only is True
    with pytest.raises(ConfigError, match="read_only"):
        settings.server_config({}, write(tmp_path / "bad.toml", '[server]\nread_only = "yes"\n'), {})
    out = zfile_cli("serve", "--read-only", "--root", str(tmp_path / "s"), "--check-config").stdout
    assert "read_only = true" in out


def test_client_precedence(tmp_path):
    cfg = write(tmp_path / "z.toml", '[client]\nserver = "10.1.2.3"\nserver_key = "/f/server.key"\n')
    env = {"ZFILE_SERVER": "127.0.0.1:6000", "ZFILE_CLIENT_KEY": "/e/me.key_secret"}
    got = settings.client_settings({"server": None}, cfg, env)
    assert got == settings.ClientSettings("tcp://127.0.0.1:6000", "/f/server.key", "/e/me.key_secret")
    got = settings.client_settings({"server": "ipc:///tmp/z.sock"}, cfg, env)
    assert got.server == "ipc:///tmp/z.sock"
    assert settings.client_settings({}, cfg, {"ZFILE_CLIENT_KEY": "k"}).server == "tcp://10.1.2.3:5555"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[server]\nmax_transfer = 3\n", ["max_transfer", "unknown key"]),
        ('[server]\nmax_transfers = "3"\n', ["max_transfers", "must be an integer"]),
        ("[server]\nmax_transfers = true\n", ["max_transfers", "must be an integer"]),
        ("[server]\ninsecure = 1\n", ["insecure", "true or false"]),
        ("[server]\nroot = 5\n", ["root", "must be a string"]),
        ("[server]\nidle_timeout = 0.0\n", ["idle_timeout", "at least 0.1"]),
        ('[server]\nlog_format = "xml"\n', ["log_format", "text, json"]),
        ('[server]\nbind = "udp://x:1"\n', ["bind", "only tcp://"]),
        ("[servr]\n", ["servr", "unknown key"]),
        ("server = 1\n", ["server", "must be a table"]),
        ("[client]\nport = 1\n", ["[client] port", "unknown key"]),
        ("[server\n", ["not valid TOML"]),
    ],
)
def test_file_errors_name_the_key(tmp_path, text, names):
    cfg = write(tmp_path / "z.toml", text)
    with pytest.raises(ConfigError) as err:
        settings.server_config({}, cfg, {})
        settings.client_settings({}, cfg, {})
    for name in names:
        assert name in str(err.value)
    assert str(cfg) in str(err.value)


@pytest.mark.parametrize(
    ("var", "value", "names"),
    [
        ("ZFILE_MAX_TRANSFERS", "many", ["ZFILE_MAX_TRANSFERS", "must be an integer", "'many'"]),
        ("ZFILE_GRACE_PERIOD", "soon", ["ZFILE_GRACE_PERIOD", "must be a number"]),
        ("ZFILE_INSECURE", "perhaps", ["ZFILE_INSECURE", "true or false"]),
        ("ZFILE_LOG_LEVEL", "LOUD", ["log_level", "DEBUG, INFO"]),
    ],
)
def test_env_errors_name_the_variable(var, value, names):
    with pytest.raises(ConfigError) as err:
        settings.server_config({}, None, {"ZFILE_CONFIG": "/dev/null", var: value})
    for name in names:
        assert name in str(err.value)


def test_missing_files(tmp_path, monkeypatch):
    # The default path may be missing...
    monkeypatch.setattr(settings, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.toml"))
    assert settings.server_config({}, None, {}) == ServerConfig()
    # ...an explicit one (flag or ZFILE_CONFIG) may not.
    with pytest.raises(ConfigError, match="absent.toml does not exist"):
        settings.server_config({}, tmp_path / "absent.toml", {})
    with pytest.raises(ConfigError, match="absent.toml does not exist"):
        settings.server_config({}, None, {"ZFILE_CONFIG": str(tmp_path / "absent.toml")})
    # The default path is read when it is there.
    monkeypatch.setattr(settings, "DEFAULT_CONFIG_PATH", str(write(tmp_path / "d.toml", "[server]\nwindow = 5\n")))
    assert settings.server_config({}, None, {}).window == 5


def test_example_config_documents_every_key_and_loads():
    text = EXAMPLE.read_text()
    for f in dataclasses.fields(ServerConfig):
        assert f"# {f.name} = " in text or f"\n{f.name} = " in text, f"{f.name} is not documented in {EXAMPLE}"
    for f in dataclasses.fields(settings.ClientSettings):
        assert f"# {f.name} = " in text, f"[client] {f.name} is not documented"
    # Uncommenting every setting gives a file that loads (types and names are right).
    uncommented = re.sub(r"(?m)^# (\w+ = )", r"\1", text)
    data = tomllib.loads(uncommented)
    assert set(data["server"]) == {f.name for f in dataclasses.fields(ServerConfig)}
    assert set(data["client"]) == {f.name for f in dataclasses.fields(settings.ClientSettings)}


def _check_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zfile", "serve", "--check-config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_check_config_prints_the_effective_config(tmp_path):
    cfg = write(
        tmp_path / "z.toml",
        '[server]\nmax_transfers = 7\nidle_timeout = 9.0\nroot = "/from/file"\nlog_level = "debug"\n'
        'bind = "127.0.0.1:6000"\n',
    )
    proc = _check_config(
        "--config", str(cfg), "--root", "/from/flag", env={"ZFILE_IDLE_TIMEOUT": "11", "ZFILE_ROOT": "/from/env"}
    )
    assert proc.returncode == 0, proc.stderr
    printed = tomllib.loads(proc.stdout)["server"]
    assert printed["root"] == "/from/flag"
    assert printed["idle_timeout"] == 11.0
    assert printed["max_transfers"] == 7
    assert printed["log_level"] == "DEBUG"
    assert printed["bind"] == "tcp://127.0.0.1:6000"
    assert printed["grace_period"] == ServerConfig().grace_period
    assert "# secret_key is not set" in proc.stdout
    # What it prints is itself a config file giving the same result.
    again = write(tmp_path / "again.toml", proc.stdout)
    assert _check_config("--config", str(again)).stdout == proc.stdout


@pytest.mark.slow
def test_check_config_errors_exit_2_naming_the_key(tmp_path):
    cfg = write(tmp_path / "z.toml", "[server]\nmax_transfers = -1\n")
    proc = _check_config("--config", str(cfg))
    assert proc.returncode == 2
    assert proc.stderr.startswith("zfile: error: ") and "max_transfers" in proc.stderr
    proc = _check_config("--config", str(tmp_path / "absent.toml"))
    assert proc.returncode == 2 and "absent.toml does not exist" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.slow
def test_client_reads_its_table(tmp_path, daemon):
    cfg = write(tmp_path / "c.toml", f'[client]\nserver = "{daemon.endpoint}"\n')
    # No --from: the endpoint comes from the file.
    assert zfile_cli("ls", "--json", "--config", str(cfg)).stdout.strip() == "[]"
    bad = write(tmp_path / "bad.toml", "[client]\nserver = 5\n")
    proc = zfile_cli("ls", "--config", str(bad), check=False)
    assert proc.returncode == 2 and "[client] server must be a string" in proc.stderr


@pytest.mark.slow
def test_client_endpoint_errors_name_their_source(monkeypatch):
    proc = zfile_cli("ls", "--to", "udp://x:1", check=False)
    assert proc.returncode == 2 and "--to/--from" in proc.stderr and "only tcp://" in proc.stderr
    monkeypatch.setenv("ZFILE_SERVER", "host:99999")
    proc = zfile_cli("ls", check=False)
    assert proc.returncode == 2 and "ZFILE_SERVER" in proc.stderr


def test_http_settings(tmp_path):
    cfg = write(tmp_path / "z.toml", '[server]\nhttp = "127.0.0.1:8080"\n')
    assert settings.server_config({}, cfg, {}).http == "127.0.0.1:8080"
    got = settings.server_config({}, cfg, {"ZFILE_HTTP": "[::1]:9090", "ZFILE_HTTP_TOKENS": "/t"})
    assert (got.http, got.http_tokens) == ("[::1]:9090", "/t")
    assert settings.server_config({}, None, {}).http is None  # off by default
    with pytest.raises(ConfigError, match="ZFILE_HTTP.*HOST:PORT"):
        settings.server_config({}, None, {"ZFILE_HTTP": "8080"})
    with pytest.raises(ConfigError, match="http-tokens.*HTTP is off"):
        settings.server_config({"http_tokens": "/t"}, None, {})
    with pytest.raises(ConfigError, match="ZFILE_HTTP_CERT.*HTTP is off"):
        settings.server_config({}, None, {"ZFILE_HTTP_CERT": "/c", "ZFILE_HTTP_KEY": "/k"})
    with pytest.raises(ConfigError, match="http_cert and http_key go together"):
        settings.server_config({"http": "127.0.0.1:8080", "http_cert": "/c"}, None, {})


@pytest.mark.slow
def test_check_config_refuses_open_http():
    proc = _check_config("--http", "0.0.0.0:8080")
    assert proc.returncode == 2 and "--http-tokens" in proc.stderr
    proc = _check_config("--http", "0.0.0.0:8080", "--insecure")
    assert proc.returncode == 0 and 'http = "0.0.0.0:8080"' in proc.stdout


def test_store_and_s3_endpoint_settings(tmp_path):
    cfg = write(tmp_path / "s.toml", '[server]\nstore = "s3://file/p/"\ns3_endpoint = "http://file:1"\n')
    config = settings.server_config({}, cfg, {"ZFILE_S3_ENDPOINT": "https://env:2"})
    assert (config.store, config.s3_endpoint) == ("s3://file/p/", "https://env:2")
    config = settings.server_config({"store": "/a/dir"}, cfg, {})
    assert config.store == "/a/dir"
    assert settings.server_config({}, None, {}).store is None  # the store is root, as before
    with pytest.raises(ConfigError, match="--store names no bucket"):
        settings.server_config({"store": "s3:///p/"}, None, {})
    with pytest.raises(ConfigError, match="ZFILE_S3_ENDPOINT.*http:// or https:// URL"):
        settings.server_config({}, None, {"ZFILE_S3_ENDPOINT": "127.0.0.1:8333"})
