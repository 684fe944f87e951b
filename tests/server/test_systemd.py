"""systemd integration: sd_notify from a real daemon to a NOTIFY_SOCKET the
test owns, the unit file, and scripts/install into a scratch DESTDIR."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from zfile.protocol.events import Cancel, Chunk, Put, PutReady
from zfile.server import notify
from zfile.transport.dealer import ClientSocket

from ..conftest import start_daemon, zfile_cli

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20


class NotifyListener:
    """An AF_UNIX datagram socket standing in for systemd's notify socket;
    records (arrival time, fields) of every notification from a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, list[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode().split("\n")))

    def wait_for(self, predicate, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, fields in list(self.messages):
                if predicate(fields):
                    return fields
            time.sleep(0.02)
        raise AssertionError(f"no such notification; got {self.fields()}")

    def fields(self) -> list[list[str]]:
        return [f for _, f in self.messages]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def idle_after_busy(fields: list[list[str]]) -> bool:
    """Whether a STATUS of none in flight came after one of an upload in flight."""
    busy = [i for i, f in enumerate(fields) if any("1 transfer(s) in flight" in x for x in f)]
    return bool(busy) and any("0 transfer(s) in flight" in x for f in fields[busy[0] + 1 :] for x in f)


@pytest.mark.slow
async def test_notify_sequence_and_watchdog(tmp_path: Path, monkeypatch):
    listener = NotifyListener(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:
        ready = listener.wait_for(lambda f: "READY=1" in f)
        assert any(x.startswith("STATUS=serving on tcp://127.0.0.1:") and "0 transfer(s)" in x for x in ready)

        # An upload held open: STATUS reports it in flight, then gone.
        client = await ClientSocket.connect(d.endpoint)
        try:
            await client.send(Put(1, "held.bin", 4 * MiB, 1_600_000_000_000_000_000, 0o644, "blake3"))
            assert isinstance(await asyncio.wait_for(client.recv(), 10), PutReady)
            await client.send(Chunk(1, 0, os.urandom(MiB)))
            await asyncio.to_thread(listener.wait_for, lambda f: any("1 transfer(s) in flight" in x for x in f))
            await client.send(Cancel(1))
        finally:
            client.close()
        # Let a few watchdog pings arrive, and the STATUS of none in flight
        # (checked every second) after the busy one, before the stop.
        deadline = time.monotonic() + 20
        while sum("WATCHDOG=1" in f for f in listener.fields()) < 4 or not idle_after_busy(listener.fields()):
            assert time.monotonic() < deadline, listener.fields()
            await asyncio.sleep(0.1)
    finally:
        code = d.stop()
    assert code == 0, d.log_text()
    listener.wait_for(lambda f: "STOPPING=1" in f)
    listener.close()

    fields = listener.fields()
    first_ready = next(i for i, f in enumerate(fields) if "READY=1" in f)
    busy = next(i for i, f in enumerate(fields) if any("1 transfer(s) in flight" in x for x in f))
    stopping = next(i for i, f in enumerate(fields) if "STOPPING=1" in f)
    assert first_ready < busy < stopping, fields
    # ...and once the upload was cancelled, back to none in flight.
    assert any("0 transfer(s) in flight" in x for f in fields[busy + 1 : stopping] for x in f), fields
    assert first_ready == 0, fields  # nothing before READY=1
    assert not any("READY=1" in f for f in fields[stopping:]), fields

    # Pings every half WATCHDOG_USEC (1 s): never early, always well before
    # the 2 s deadline at which systemd would restart the service.
    pings = [t for t, f in listener.messages if f == ["WATCHDOG=1"]]
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert len(gaps) >= 3
    assert all(0.9 <= g < 2.0 for g in gaps), gaps
    assert "systemd watchdog: pinging every 1.000 s" in d.log_text()


async def test_a_long_start_asks_for_more_time_until_ready(tmp_path: Path, monkeypatch):
    """Before, a start longer than TimeoutStartSec= (--adopt hashing a large
    tree) was killed, and under Restart=on-failure began again, forever."""
    from zfile.server.config import ServerConfig
    from zfile.server.server import Server

    from ..conftest import free_port

    root = tmp_path / "store"
    for d in range(20):  # a tree copied in by hand: adopted as the store opens
        (root / f"d{d}").mkdir(parents=True)
        for i in range(100):
            (root / f"d{d}" / f"f{i}").write_bytes(os.urandom(64 << 10))
    listener = NotifyListener(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.setattr(notify, "EXTEND_PERIOD", 0.01)
    server = Server(ServerConfig(bind=f"tcp://127.0.0.1:{free_port()}", root=str(root), adopt=True))
    await server.startup()
    try:
        await asyncio.to_thread(listener.wait_for, lambda f: "READY=1" in f)
        await asyncio.sleep(0.1)  # nothing more to ask for once ready
    finally:
        await server.shutdown()
        listener.close()
    fields = listener.fields()
    ready = next(i for i, f in enumerate(fields) if "READY=1" in f)
    assert ready >= 2, fields
    for f in fields[:ready]:
        assert f[0] == "EXTEND_TIMEOUT_USEC=30000", fields
        assert re.fullmatch(rf"STATUS=opening the store {re.escape(str(root))}: \d+ s so far", f[1]), fields
    assert not any(x.startswith("EXTEND_TIMEOUT_USEC=") for f in fields[ready:] for x in f), fields


def test_extend_start_sends_three_periods_each_period(tmp_path: Path):
    listener = NotifyListener(tmp_path / "notify.sock")
    notifier = notify.Notifier({"NOTIFY_SOCKET": str(listener.path)})

    async def run() -> None:
        task = asyncio.create_task(notifier.extend_start(lambda: "STATUS=opening", period=0.05))
        await asyncio.sleep(0.32)
        task.cancel()
        await asyncio.sleep(0.15)  # nothing once cancelled

    try:
        asyncio.run(run())
    finally:
        notifier.close()
        listener.close()
    times = [t for t, f in listener.messages]
    assert all(f == ["EXTEND_TIMEOUT_USEC=150000", "STATUS=opening"] for f in listener.fields()), listener.fields()
    assert 2 <= len(times) <= 6, times  # never more often than each period
    assert all(b - a >= 0.04 for a, b in zip(times, times[1:], strict=False)), times


@pytest.mark.slow
def test_no_notify_socket_no_notifications(tmp_path: Path, daemon):
    # The ordinary daemon fixture runs without NOTIFY_SOCKET and works as before.
    zfile_cli("ls", "--from", daemon.endpoint)
    assert "watchdog" not in daemon.log_text()


def test_notifier_abstract_socket_and_watchdog_rules():
    name = f"zfile-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind("\0" + name)
        n = notify.Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.enabled and n.notify("READY=1", "STATUS=hello")
        assert rx.recv(100) == b"READY=1\nSTATUS=hello"
        n.close()
    assert not notify.Notifier({}).enabled and notify.Notifier({}).notify("READY=1") is False
    assert not notify.Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled
    # A socket that is gone is not an error for the daemon.
    gone = notify.Notifier({"NOTIFY_SOCKET": "/nonexistent/zfile-notify.sock"})
    assert gone.notify("READY=1") is False
    assert notify.watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert notify.watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}) == 1.5
    assert notify.watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}) is None
    assert notify.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert notify.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert notify.watchdog_interval({}) is None


@pytest.mark.slow
def test_sigterm_sends_stopping_before_the_drain_ends(tmp_path: Path, monkeypatch):
    listener = NotifyListener(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    d = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--grace-period", "75")
    try:
        listener.wait_for(lambda f: "READY=1" in f)
        d.proc.send_signal(signal.SIGTERM)
        stopping = listener.wait_for(lambda f: "STOPPING=1" in f)
        assert any(x.startswith("STATUS=draining") for x in stopping)
        # The grace period and 15 s to close: longer than the unit's TimeoutStopSec=45, so that
        # systemd does not SIGKILL a drain the operator allowed 75 s.
        assert "EXTEND_TIMEOUT_USEC=90000000" in stopping
        assert d.proc.wait(timeout=30) == 0, d.log_text()
    finally:
        d.stop()
        listener.close()


def test_unit_has_the_required_settings():
    unit = (REPO / "systemd" / "zfile.service").read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=zfile",
        "ConfigurationDirectory=zfile",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=sched_setscheduler",
        "CapabilityBoundingSet=",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "WatchdogSec=30",
    ):
        assert f"\n{line}\n" in unit, line
    assert "--root /var/lib/zfile" in unit and "--config /etc/zfile/zfile.toml" in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_verifies_and_rates_ok():
    proc = subprocess.run([str(REPO / "scripts" / "check-unit")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "systemd-analyze verify: ok" in proc.stdout
    line = next(x for x in proc.stdout.splitlines() if "Overall exposure level" in x)
    score = float(line.split(": ")[-1].split()[0])
    assert score < 5.0 and (" OK" in line or " SAFE" in line), line


def _install(dest: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DESTDIR": str(dest)}
    proc = subprocess.run(
        [str(REPO / "scripts" / "install"), *args], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.slow
def test_install_is_idempotent_and_uninstall_keeps_data(tmp_path: Path):
    dest = tmp_path / "root"
    _install(dest)
    zfile = dest / "opt" / "zfile" / "bin" / "zfile"
    conf = dest / "etc" / "zfile" / "zfile.toml"
    assert subprocess.run([str(zfile), "--version"], capture_output=True, text=True).stdout.startswith("zfile")
    assert (dest / "etc/systemd/system/zfile.service").read_text() == (REPO / "systemd/zfile.service").read_text()
    assert conf.read_text() == (REPO / "systemd/zfile.toml.example").read_text()
    assert (dest / "etc/zfile/authorized_keys").is_dir()
    assert os.readlink(dest / "usr/local/bin/zfile") == "/opt/zfile/bin/zfile"
    state = dest / "var" / "lib" / "zfile"
    assert not state.exists()  # the unit's StateDirectory=: systemd makes it on first start
    # The installed example config is all defaults: the installed daemon accepts it.
    check = subprocess.run([str(zfile), "serve", "--check-config", "--config", str(conf)], capture_output=True)
    assert check.returncode == 0, check.stderr

    # An operator's edits survive a second install, which succeeds as well.
    conf.write_text('[server]\nbind = "127.0.0.1:6000"\n')
    state.mkdir(mode=0o700, parents=True)
    (state / "kept.bin").write_bytes(b"data")
    again = _install(dest)
    assert "kept" in again.stdout and conf.read_text() == '[server]\nbind = "127.0.0.1:6000"\n'

    _install(dest, "--uninstall")
    assert not (dest / "opt" / "zfile").exists()
    assert not (dest / "etc/systemd/system/zfile.service").exists()
    assert not (dest / "usr/local/bin/zfile").is_symlink()
    assert (state / "kept.bin").read_bytes() == b"data" and conf.exists()

    _install(dest, "--uninstall", "--purge")
    assert not state.exists() and not (dest / "etc" / "zfile").exists()
