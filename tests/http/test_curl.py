"""The HTTP front of a real ``zfile serve --http`` daemon, driven with curl and the zfile CLI."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ..conftest import free_port, start_daemon, zfile_cli

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (scripts/test installs it)")


@pytest.fixture
def served(tmp_path: Path):
    """A daemon with HTTP on a free loopback port: ``(daemon, base URL)``."""
    port = free_port()
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--http", f"127.0.0.1:{port}")
    yield d, f"http://127.0.0.1:{port}"
    assert d.stop() == 0, d.log_text()


def curl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"curl {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}")
    return proc


def status(*args: str) -> int:
    return int(curl("-o", os.devnull, "-w", "%{http_code}", *args).stdout)


@pytest.mark.slow
def test_put_get_ranges_head_and_304(served, tmp_path):
    daemon, base = served
    data = os.urandom(3 << 20)
    src = tmp_path / "a.bin"
    src.write_bytes(data)
    url = f"{base}/files/datasets/a.bin"
    assert status("-T", str(src), url) == 201
    assert curl(url).stdout == data
    assert curl("-r", "0-0", url).stdout == data[:1]
    assert curl("-r", f"{len(data) - 1}-{len(data) - 1}", url).stdout == data[-1:]
    assert curl("-r", "-1", url).stdout == data[-1:]
    assert curl("-r", "1000-1999", url).stdout == data[1000:2000]
    assert status("-r", f"{len(data)}-", url) == 416
    head = curl("-I", url).stdout.decode()
    assert "200" in head.splitlines()[0] and f"Content-Length: {len(data)}" in head and "Accept-Ranges: bytes" in head
    etag = next(line.split(":", 1)[1].strip() for line in head.splitlines() if line.lower().startswith("etag:"))
    assert status("-H", f"If-None-Match: {etag}", url) == 304
    modified = next(line.split(":", 1)[1].strip() for line in head.splitlines() if line.startswith("Last-Modified:"))
    assert status("-H", f"If-Modified-Since: {modified}", url) == 304
    piped = subprocess.run(  # from a pipe: no length, so a chunked body
        ["curl", "-sS", "-o", os.devnull, "-w", "%{http_code}", "-T", "-", f"{base}/files/piped.bin"],
        input=data[:100_000],
        capture_output=True,
        timeout=60,
    )
    assert piped.stdout == b"201" and curl(f"{base}/files/piped.bin").stdout == data[:100_000]
    assert status("-X", "DELETE", url) == 204
    assert status(url) == 404
    metrics = curl(f"{base}/metrics").stdout.decode()
    assert "zfile_zmq_transfers_in_flight 0.0" in metrics and "zfile_http_received_bytes_total" in metrics
    # One log line per request: method, path, status, bytes, seconds, peer;
    # written as the request ends, which may be after curl has its answer.
    lines = (f"PUT /files/datasets/a.bin 201 {len(data)} B ", "GET /files/datasets/a.bin 206 1 B ")
    deadline = time.monotonic() + 30
    while not all(line in daemon.log_text() for line in lines):
        assert time.monotonic() < deadline, daemon.log_text()
        time.sleep(0.02)


@pytest.mark.slow
def test_curl_resumes_with_range(served, tmp_path):
    _, base = served
    data = os.urandom(2 << 20)
    (tmp_path / "r.bin").write_bytes(data)
    assert status("-T", str(tmp_path / "r.bin"), f"{base}/files/r.bin") == 201
    out = tmp_path / "out.bin"
    out.write_bytes(data[:700_001])  # what an interrupted download left
    curl("-C", "-", "-o", str(out), f"{base}/files/r.bin")
    assert out.read_bytes() == data


@pytest.mark.slow
def test_traversal_attempts_get_400(served, tmp_path):
    daemon, base = served
    (tmp_path / "x").write_bytes(b"x")
    for path in ["/files/../x", "/files/%2e%2e/x", "/files/a/%2E%2E/%2e%2e/x", "/files/a%00b", "/files//etc/passwd"]:
        assert status("--path-as-is", f"{base}{path}") == 400, path
        assert status("--path-as-is", "-T", str(tmp_path / "x"), f"{base}{path}") == 400, path
    assert not (daemon.root.parent / "x.stored").exists()
    assert sorted(p.name for p in daemon.root.iterdir()) == [".zfile"]


@pytest.mark.slow
def test_zfile_send_then_curl_and_curl_then_zfile_get(served, tmp_path):
    daemon, base = served
    sent = tmp_path / "sent.bin"
    sent.write_bytes(os.urandom(5 << 20))
    zfile_cli("send", str(sent), "--to", daemon.endpoint, "-q")
    assert curl(f"{base}/files/sent.bin").stdout == sent.read_bytes()
    put = tmp_path / "put.bin"
    put.write_bytes(os.urandom(5 << 20))
    assert status("-T", str(put), f"{base}/files/put.bin") == 201
    zfile_cli("get", "put.bin", "--from", daemon.endpoint, "-o", str(tmp_path / "back"), "-q")
    assert (tmp_path / "back" / "put.bin").read_bytes() == put.read_bytes()


@pytest.mark.slow
def test_tokens_reload_on_sighup_and_open_address_refused(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("old read\n")
    port = free_port()
    log = tmp_path / "daemon.log"
    d = start_daemon(tmp_path / "store", log, "--http", f"127.0.0.1:{port}", "--http-tokens", str(tokens))
    try:
        url = f"http://127.0.0.1:{port}/files/"
        assert status(url) == 401
        assert status("-H", "Authorization: Bearer old", url) == 200
        tokens.write_text("new read\n")
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded 1 HTTP token(s)" not in d.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status("-H", "Authorization: Bearer old", url) == 401
        assert status("-H", "Authorization: Bearer new", url) == 200
    finally:
        assert d.stop() == 0, d.log_text()
    refused = zfile_cli(
        "serve",
        "--root",
        str(tmp_path / "s2"),
        "--bind",
        f"tcp://127.0.0.1:{free_port()}",
        "--http",
        f"0.0.0.0:{free_port()}",
        check=False,
        timeout=30,
    )
    assert refused.returncode == 2 and "--http-tokens" in refused.stderr


@pytest.mark.slow
def test_sigterm_lets_a_running_download_finish(tmp_path):
    port = free_port()
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--http", f"127.0.0.1:{port}")
    data = os.urandom(12 << 20)  # more than the socket buffers hold: still sending at SIGTERM
    (tmp_path / "s.bin").write_bytes(data)
    url = f"http://127.0.0.1:{port}/files/s.bin"
    try:
        assert status("-T", str(tmp_path / "s.bin"), url) == 201
        out = tmp_path / "out.bin"
        slow = subprocess.Popen(["curl", "-sS", "--limit-rate", "4M", "-o", str(out), url])
        while not out.exists() or out.stat().st_size == 0:
            time.sleep(0.02)
        d.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while curl("-I", url, check=False).returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert curl("-I", url, check=False).returncode != 0  # no longer listening, though still sending
        assert slow.wait(timeout=60) == 0
        assert out.read_bytes() == data
        # It exits by itself once the download is done (a second signal would mean "stop now").
        assert d.proc.wait(timeout=60) == 0, d.log_text()
    finally:
        assert d.stop() == 0, d.log_text()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_https_with_cert_and_key(tmp_path):
    from .test_access import make_cert

    cert, key = make_cert(tmp_path)
    port = free_port()
    tls = ("--http-cert", cert, "--http-key", key)
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--http", f"127.0.0.1:{port}", *tls)
    try:
        data = os.urandom(300_000)
        (tmp_path / "t.bin").write_bytes(data)
        url = f"https://127.0.0.1:{port}/files/t.bin"
        assert status("--cacert", cert, "-T", str(tmp_path / "t.bin"), url) == 201
        assert curl("--cacert", cert, url).stdout == data
        assert curl(f"http://127.0.0.1:{port}/files/t.bin", check=False).stdout[:4] != b"HTTP"  # no plain HTTP
        assert "HTTP on https://127.0.0.1" in d.log_text()
    finally:
        assert d.stop() == 0, d.log_text()


@pytest.mark.slow
def test_json_log_lines_carry_the_request_fields(tmp_path):
    import json

    port = free_port()
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--http", f"127.0.0.1:{port}", "--log-format", "json")
    try:
        assert status(f"http://127.0.0.1:{port}/files/none.bin") == 404
        deadline = time.monotonic() + 10
        while "/files/none.bin" not in d.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        assert d.stop() == 0, d.log_text()
    lines = [json.loads(line) for line in d.log_text().splitlines() if "/files/none.bin" in line]
    assert len(lines) == 1
    fields = lines[0]
    assert fields["logger"] == "zfile.http"
    want = ("GET", "/files/none.bin", 404, "127.0.0.1")
    assert (fields["method"], fields["path"], fields["status"], fields["peer"]) == want
    assert fields["bytes"] > 0 and fields["seconds"] >= 0  # the 404's sentence


@pytest.mark.slow
def test_metrics_count_zeromq_transfers_and_the_store(served, tmp_path):
    d, base = served
    src = tmp_path / "m.bin"
    src.write_bytes(os.urandom(3 << 20))  # streamed, not inline
    zfile_cli("send", str(src), "--to", d.endpoint)
    zfile_cli("get", "m.bin", "--from", d.endpoint, "-o", str(tmp_path / "back"))
    text = curl(f"{base}/metrics").stdout.decode()
    assert 'zfile_transfers_total{direction="in",result="ok"} 1.0' in text
    assert 'zfile_transfers_total{direction="out",result="ok"} 1.0' in text
    moved = re.search(r'^zfile_transfer_bytes_total\{direction="in"\} (\S+)$', text, re.M).group(1)
    assert float(moved) == 3 << 20
    assert 'zfile_transfer_seconds_count{direction="out"} 1.0' in text
    assert "zfile_store_partials 0.0" in text
    free = float(re.search(r"^zfile_store_free_bytes (\S+)$", text, re.M).group(1))
    assert free > 0
