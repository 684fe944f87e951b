"""CurveZMQ: authorized keys only, encryption on the wire, the peer's key in the
catalog and the transfer log, SIGHUP reload, and the refusal to serve a
non-loopback address in clear.  Every daemon here is a real subprocess on
127.0.0.1; nothing is sent anywhere else."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import blake3
import pytest

from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.errors import AuthFailed
from zfile.protocol.events import Chunk, Error, Put, PutEnd, PutOk, PutReady
from zfile.transport import curve as auth
from zfile.transport.dealer import ClientCurve, ClientSocket

from ..conftest import Daemon, free_port, start_daemon, zfile_cli

MiB = 1 << 20


@dataclass
class Keys:
    dir: Path
    server_public: Path
    server_secret: Path
    authorized: Path
    alice_secret: Path  # authorized from the start
    bob_secret: Path  # not authorized (until a test adds him)

    def public(self, secret: Path) -> str:
        return auth.load_public_key(secret).decode()

    def curve(self, client_secret: Path) -> ClientCurve:
        return ClientCurve(auth.load_public_key(self.server_public), auth.load_keypair(client_secret))

    def cli(self, client_secret: Path) -> list[str]:
        return ["--server-key", str(self.server_public), "--client-key", str(client_secret)]

    def serve_args(self) -> list[str]:
        return ["--secret-key", str(self.server_secret), "--authorized-keys", str(self.authorized)]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    base = tmp_path / "keys"
    server_public, server_secret = auth.generate_keypair(base / "server", "server")
    alice_public, alice_secret = auth.generate_keypair(base / "clients", "alice")
    _, bob_secret = auth.generate_keypair(base / "clients", "bob")
    authorized = base / "authorized"
    authorized.mkdir()
    (authorized / "alice.key").write_bytes(alice_public.read_bytes())
    return Keys(base, server_public, server_secret, authorized, alice_secret, bob_secret)


@pytest.fixture
def curve_daemon(tmp_path: Path, keys: Keys):
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", *keys.serve_args())
    yield d
    assert d.stop() == 0, d.log_text()


@pytest.mark.slow
def test_keygen_writes_a_pyzmq_key_pair(tmp_path):
    out = tmp_path / "k"
    proc = zfile_cli("keygen", "--out", str(out), "--name", "node1")
    public, secret = out / "node1.key", out / "node1.key_secret"
    pub, sec = auth.load_keypair(secret).public, auth.load_keypair(secret).secret
    assert auth.load_public_key(public) == pub and len(sec) == 40
    assert pub.decode() in proc.stdout
    assert secret.stat().st_mode & 0o777 == 0o600
    # Never overwrites a key.
    again = zfile_cli("keygen", "--out", str(out), "--name", "node1", check=False)
    assert again.returncode == 1 and "exists" in again.stderr
    assert auth.load_keypair(secret).secret == sec


@pytest.mark.slow
def test_authorized_client_round_trip_records_its_key(curve_daemon: Daemon, keys: Keys, tmp_path: Path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * MiB + 5))
    zfile_cli("send", str(src), "--to", curve_daemon.endpoint, *keys.cli(keys.alice_secret))
    back = tmp_path / "back"
    zfile_cli("get", "src.bin", "--from", curve_daemon.endpoint, "-o", str(back), *keys.cli(keys.alice_secret))
    assert (back / "src.bin").read_bytes() == src.read_bytes()

    listing = json.loads(
        zfile_cli("ls", "-R", "--json", "--from", curve_daemon.endpoint, *keys.cli(keys.alice_secret)).stdout
    )
    alice = keys.public(keys.alice_secret)
    assert [(e["name"], e["peer"]) for e in listing] == [("src.bin", alice)]
    log = curve_daemon.log_text()
    assert f"peer={alice} " in log and "dir=in name='src.bin'" in log and "dir=out name='src.bin'" in log
    assert "CURVE on, 1 authorized key(s)" in log


@pytest.mark.slow
def test_unknown_key_gets_no_service(curve_daemon: Daemon, keys: Keys, tmp_path: Path):
    src = tmp_path / "intruder.bin"
    src.write_bytes(b"not welcome")
    args = ("--to", curve_daemon.endpoint)
    proc = zfile_cli("send", str(src), *args, *keys.cli(keys.bob_secret), check=False)
    assert proc.returncode == 1
    assert "refused this client's CURVE key" in proc.stderr
    # Nothing was stored, and the daemon says whom it refused.
    listing = json.loads(zfile_cli("ls", "-R", "--json", *args, *keys.cli(keys.alice_secret)).stdout)
    assert listing == []
    assert not (curve_daemon.root / "intruder.bin").exists()
    assert f"refused client key {keys.public(keys.bob_secret)}" in curve_daemon.log_text()


@pytest.mark.slow
def test_plain_client_cannot_talk_to_a_curve_daemon(curve_daemon: Daemon):
    proc = zfile_cli("ls", "--from", curve_daemon.endpoint, check=False)
    assert proc.returncode == 1
    assert "ZMTP handshake" in proc.stderr and "requires CURVE" in proc.stderr


@pytest.mark.slow
def test_wrong_server_key_is_refused(curve_daemon: Daemon, keys: Keys):
    # The client expects another daemon's key: the handshake must fail.
    proc = zfile_cli(
        "ls",
        "--from",
        curve_daemon.endpoint,
        "--timeout",
        "3",
        "--server-key",
        str(keys.bob_secret),
        "--client-key",
        str(keys.alice_secret),
        check=False,
    )
    assert proc.returncode == 1 and "CURVE handshake" in proc.stderr


class Tap:
    """A TCP proxy on 127.0.0.1 that records every byte passing either way."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.captured = bytearray()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(1 << 16):
                    self.captured += data
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def _send_through_tap(daemon: Daemon, src: Path, curve: ClientCurve | None) -> bytes:
    tap = Tap(int(daemon.endpoint.rsplit(":", 1)[1]))
    endpoint = await tap.start()
    try:
        async with Client(ClientConfig(endpoint, timeout=10, curve=curve)) as client:
            result = await client.put(src)
            assert result.size == src.stat().st_size
        return bytes(tap.captured)
    finally:
        tap.close()


@pytest.mark.slow
async def test_payload_is_encrypted_on_the_wire(tmp_path: Path, keys: Keys):
    src = tmp_path / "secret.bin"
    payload = os.urandom(2 * MiB)
    src.write_bytes(payload)
    samples = [payload[i : i + 32] for i in range(0, len(payload), 256 << 10)]

    plain = start_daemon(tmp_path / "plain-store", tmp_path / "plain.log")
    try:
        wire = await _send_through_tap(plain, src, None)
    finally:
        assert plain.stop() == 0
    # The tap sees the plaintext of an unencrypted transfer: it does capture.
    assert all(s in wire for s in samples)

    curved = start_daemon(tmp_path / "curve-store", tmp_path / "curve.log", *keys.serve_args())
    try:
        wire = await _send_through_tap(curved, src, keys.curve(keys.alice_secret))
    finally:
        assert curved.stop() == 0
    assert len(wire) > len(payload)  # every byte went through the tap...
    assert not any(s in wire for s in samples)  # ...and none of it in clear
    assert (curved.root / "secret.bin").read_bytes() == payload


async def test_sighup_reloads_keys_without_dropping_a_running_upload(curve_daemon: Daemon, keys: Keys):
    data = os.urandom(4 * MiB)
    half = len(data) // 2
    # Alice starts an upload and sends half of it.
    alice = await ClientSocket.connect(curve_daemon.endpoint, curve=keys.curve(keys.alice_secret))
    try:
        await alice.send(Put(1, "long.bin", len(data), 1_600_000_000_000_000_000, 0o644, "blake3"))
        ready = await asyncio.wait_for(alice.recv(), 10)
        assert isinstance(ready, PutReady) and ready.offset == 0 and ready.credit >= half
        await alice.send(Chunk(1, 0, data[:half]))

        # Bob is not authorized yet.
        async with Client(ClientConfig(curve_daemon.endpoint, curve=keys.curve(keys.bob_secret))) as bob:
            with pytest.raises(AuthFailed):
                [e async for e in bob.list()]

        # Authorize Bob and reload.
        bob_public = keys.dir / "clients" / "bob.key"
        (keys.authorized / "bob.key").write_bytes(bob_public.read_bytes())
        curve_daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded 2 authorized key(s)" not in curve_daemon.log_text():
            assert time.monotonic() < deadline, curve_daemon.log_text()
            await asyncio.sleep(0.05)

        async with Client(ClientConfig(curve_daemon.endpoint, timeout=10, curve=keys.curve(keys.bob_secret))) as bob:
            assert [e.name async for e in bob.list()] == []

        # Alice's upload, running all along, completes.
        credit = ready.credit - half
        offset = half
        while offset < len(data):
            while credit == 0:
                event = await asyncio.wait_for(alice.recv(), 10)
                credit += event.credit
            n = min(credit, 1 * MiB, len(data) - offset)
            await alice.send(Chunk(1, offset, data[offset : offset + n]))
            offset += n
            credit -= n
        await alice.send(PutEnd(1, blake3.blake3(data).digest()))
        while not isinstance(event := await asyncio.wait_for(alice.recv(), 10), PutOk):
            pass
        assert event.size == len(data)
    finally:
        alice.close()
    assert (curve_daemon.root / "long.bin").read_bytes() == data
    assert curve_daemon.proc.poll() is None


@pytest.mark.slow
def test_bad_authorized_keys_reload_keeps_the_old_set(curve_daemon: Daemon, keys: Keys):
    (keys.authorized / "broken.key").write_text("not a key\n")
    curve_daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload failed, keeping 1 authorized key(s)" not in curve_daemon.log_text():
        assert time.monotonic() < deadline, curve_daemon.log_text()
        time.sleep(0.05)
    zfile_cli("ls", "--from", curve_daemon.endpoint, *keys.cli(keys.alice_secret))


def _serve(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zfile", "serve", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_refuses_a_public_address_without_curve(tmp_path: Path, keys: Keys):
    # Only binding is at stake here: the refusal comes before any socket exists.
    public = f"tcp://0.0.0.0:{free_port()}"
    proc = _serve("--bind", public, "--root", str(tmp_path / "store"))
    assert proc.returncode == 2
    assert "refusing to bind tcp://0.0.0.0" in proc.stderr and "--insecure" in proc.stderr
    assert not (tmp_path / "store").exists()

    checked = _serve("--bind", public, "--insecure", "--check-config")
    assert checked.returncode == 0 and "INSECURE" in checked.stderr
    with_curve = _serve("--bind", public, *keys.serve_args(), "--check-config")
    assert with_curve.returncode == 0, with_curve.stderr
    assert "INSECURE" not in with_curve.stderr


@pytest.mark.slow
def test_curve_settings_must_come_together(tmp_path: Path, keys: Keys):
    proc = _serve("--secret-key", str(keys.server_secret), "--check-config")
    assert proc.returncode == 2 and "secret_key and authorized_keys go together" in proc.stderr
    proc = zfile_cli("ls", "--server-key", str(keys.server_public), check=False)
    assert proc.returncode == 2 and "server_key and client_key go together" in proc.stderr
    proc = _serve(*keys.serve_args()[:2], "--authorized-keys", str(tmp_path / "nowhere"), "--check-config")
    assert proc.returncode == 2 and "nowhere" in proc.stderr
    public_only = ["--secret-key", str(keys.server_public), "--authorized-keys", str(keys.authorized)]
    proc = _serve(*public_only, "--check-config")
    assert proc.returncode == 2 and "holds only a public key" in proc.stderr


@pytest.mark.slow
def test_json_transfer_log_carries_the_peer_key(tmp_path: Path, keys: Keys):
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", *keys.serve_args(), "--log-format", "json")
    try:
        src = tmp_path / "a.bin"
        src.write_bytes(os.urandom(5000))
        zfile_cli("send", str(src), "--to", d.endpoint, *keys.cli(keys.alice_secret))
    finally:
        assert d.stop() == 0
    records = [json.loads(line) for line in d.log_text().splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    (line,) = [r for r in records if r.get("direction") == "in"]
    assert line["peer"] == keys.public(keys.alice_secret)
    assert line["file"] == "a.bin" and line["bytes"] == 5000 and line["result"] == "ok"
    assert line["digest"] == blake3.blake3(src.read_bytes()).hexdigest()
    assert isinstance(line["seconds"], float) and isinstance(line["mb_per_s"], float)


def test_key_files_errors_name_the_file(tmp_path: Path, keys: Keys, caplog):
    from zfile.errors import ConfigError

    bad = tmp_path / "bad.key"
    bad.write_text('curve\n    public-key = "tooshort"\n')
    with pytest.raises(ConfigError, match="bad.key: the public key is not a 40-character Z85"):
        auth.load_public_key(bad)
    with pytest.raises(ConfigError, match="cannot read key file .*absent.key"):
        auth.load_public_key(tmp_path / "absent.key")
    with pytest.raises(ConfigError, match="holds only a public key"):
        auth.load_keypair(keys.server_public)
    (keys.authorized / "bad.key").write_bytes(bad.read_bytes())
    with pytest.raises(ConfigError, match="bad.key"):
        auth.load_authorized_keys(keys.authorized)
    for name in ("", "..", "a/b"):
        with pytest.raises(ConfigError, match="not a usable key file name"):
            auth.generate_keypair(tmp_path, name)

    # A refused key is logged once a minute, not at every reconnection.
    (keys.authorized / "bad.key").unlink()
    authorized = auth.AuthorizedKeys(keys.authorized)
    bob = auth.load_public_key(keys.bob_secret)
    with caplog.at_level("WARNING", logger="zfile.auth"):
        assert [authorized.callback("*", bob) for _ in range(5)] == [False] * 5
    assert authorized.callback("*", auth.load_public_key(keys.alice_secret)) is True
    assert sum("refused client key" in r.message for r in caplog.records) == 1


async def test_a_listener_that_is_not_zmq_fails_at_once():
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n" + b"\xff" * 64)
        await writer.drain()
        await reader.read(1 << 16)
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    endpoint = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def listing() -> None:
        async with Client(ClientConfig(endpoint, timeout=3600)) as client:
            with pytest.raises(AuthFailed, match="not a zfile daemon"):
                [e async for e in client.list()]

    try:
        # Known from the first refused handshake, not after the hour's timeout
        # (a bound far from both, so that a loaded machine does not matter).
        # Twenty times: a request's send may wake as the pipe comes up and
        # goes, which is the same refusal and must read as one.
        for _ in range(20):
            await asyncio.wait_for(listing(), 60)
    finally:
        server.close()


async def test_the_per_client_cap_counts_a_curve_key_across_connections(tmp_path: Path, keys: Keys):
    """Under CURVE a client is its key: two connections of one key share
    max_transfers_per_peer; another key has its own."""
    bob_public = keys.dir / "clients" / "bob.key"
    (keys.authorized / "bob.key").write_bytes(bob_public.read_bytes())
    d = start_daemon(
        tmp_path / "store",
        tmp_path / "daemon.log",
        *keys.serve_args(),
        "--max-transfers-per-peer",
        "2",
        "--grace-period",
        "0",
    )
    socks = []
    try:

        async def put(sock: ClientSocket, tid: int, name: str):
            await sock.send(Put(tid, name, MiB, 1_600_000_000_000_000_000, 0o644, "blake3"))
            return await asyncio.wait_for(sock.recv(), 10)

        for secret in (keys.alice_secret, keys.alice_secret, keys.bob_secret):
            socks.append(await ClientSocket.connect(d.endpoint, curve=keys.curve(secret)))
        first, second, bob = socks
        assert isinstance(await put(first, 1, "a1.bin"), PutReady)
        assert isinstance(await put(second, 1, "a2.bin"), PutReady)
        refused = await put(second, 2, "a3.bin")
        assert isinstance(refused, Error) and refused.code == "busy" and "one client" in refused.message, refused
        assert isinstance(await put(bob, 1, "b1.bin"), PutReady)
    finally:
        for sock in socks:
            sock.close(linger_s=0)
        assert d.stop() == 0, d.log_text()
