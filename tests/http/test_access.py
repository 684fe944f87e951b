"""HTTP addresses, loopback and the bearer token file."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest

from zfile.errors import ConfigError
from zfile.http.access import Access, Tokens, is_loopback, load_access, load_tls, parse_address


def test_parse_address():
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert parse_address(":8080") == ("0.0.0.0", 8080)
    assert parse_address("localhost:1") == ("localhost", 1)
    for bad in ("8080", "host:", "host:0", "host:65536", "::1:80", "host:eighty"):
        with pytest.raises(ConfigError):
            parse_address(bad)


def test_is_loopback():
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "10.0.0.1", "::", "example.org", "127.example"]))


def test_tokens_file_and_reload(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# who may do what\nr3ad read\n\nwr1te write  # the uploader\n")
    tokens = Tokens(path)
    assert len(tokens) == 2
    assert tokens.access("Bearer r3ad") is Access.READ
    assert tokens.access("bearer  wr1te ") is Access.WRITE
    assert tokens.access("Bearer nope") is Access.NONE
    assert tokens.access("Basic r3ad") is Access.NONE
    assert tokens.access(None) is Access.NONE
    path.write_text("n3w write\n")
    assert tokens.reload() == 1
    assert tokens.access("Bearer r3ad") is Access.NONE and tokens.access("Bearer n3w") is Access.WRITE
    path.write_text("n3w admin\n")
    with pytest.raises(ConfigError, match="line 1"):
        tokens.reload()
    assert tokens.access("Bearer n3w") is Access.WRITE  # a failed reload keeps the tokens in force


def test_bad_token_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        Tokens(tmp_path / "missing")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="no token"):
        Tokens(tmp_path / "empty")


def test_non_loopback_needs_tokens_or_insecure(tmp_path):
    assert load_access("127.0.0.1:8080", None, False) is None
    with pytest.raises(ConfigError, match="--http-tokens"):
        load_access("0.0.0.0:8080", None, False)
    assert load_access("0.0.0.0:8080", None, True) is None
    (tmp_path / "t").write_text("x read\n")
    assert len(load_access("10.0.0.1:8080", str(tmp_path / "t"), False)) == 1


def make_cert(where) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files), made with openssl."""
    cert, key = where / "http.crt", where / "http.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_load_tls(tmp_path):
    assert load_tls(None, None) is None
    cert, key = make_cert(tmp_path)
    assert load_tls(cert, key).minimum_version >= ssl.TLSVersion.TLSv1_2
    with pytest.raises(ConfigError, match="together"):
        load_tls(cert, None)
    with pytest.raises(ConfigError, match="cannot load"):
        load_tls(cert, cert)
    with pytest.raises(ConfigError, match="cannot load"):
        load_tls(str(tmp_path / "missing.crt"), key)
