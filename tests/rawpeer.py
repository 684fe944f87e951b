"""Test helpers: a raw DEALER that sends arbitrary frames to a daemon, files,
digests, and snapshots of what lies around a store's root.

The raw peer speaks through pyzmq directly, not through zfile's client, so a
test can send what no well-behaved client would: broken msgpack, wrong
types, chunks past the credit, a GET it never reads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import blake3
import msgpack
import zmq

from zfile.protocol.codec import decode, encode
from zfile.protocol.events import Chunk, Credit, Error, Event, Put, PutReady

MiB = 1 << 20
MTIME_NS = 1_600_000_000_123_456_789


class RawPeer:
    """A DEALER connected to ``endpoint``; every call is blocking and bounded
    by ``timeout`` seconds."""

    def __init__(self, endpoint: str, *, rcvhwm: int | None = None, rcvbuf: int | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if rcvhwm is not None:
            self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        if rcvbuf is not None:
            self.sock.setsockopt(zmq.RCVBUF, rcvbuf)
        self.sock.connect(endpoint)

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, frames: Sequence[bytes]) -> None:
        self.sock.send_multipart(list(frames))

    def send_map(self, header: object, *data: bytes) -> None:
        self.send([msgpack.packb(header), *data])

    def send_event(self, event: Event) -> None:
        self.send([bytes(f) for f in encode(event)])

    def recv(self, timeout: float = 10.0) -> list[bytes]:
        if not self.sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no message within {timeout} s")
        return self.sock.recv_multipart()

    def recv_event(self, timeout: float = 10.0) -> Event:
        return decode(self.recv(timeout))

    def expect(self, tid: int, kind: type, timeout: float = 10.0) -> Event:
        """The next event of transfer ``tid``, which must be a ``kind``;
        other transfers' events and credit are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.recv_event(max(deadline - time.monotonic(), 0.001))
            if event.id != tid or (isinstance(event, Credit) and kind is not Credit):
                continue
            assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
            return event

    def expect_error(self, tid: int, code: str, timeout: float = 10.0) -> Error:
        """The ERROR answering transfer ``tid``: its code must be ``code`` and
        its message a sentence."""
        err = self.expect(tid, Error, timeout)
        assert isinstance(err, Error)
        assert err.code == code, err
        assert len(err.message) > 10 and " " in err.message, err
        return err

    def start_upload(self, tid: int, name: str, data: bytes, *, mtime_ns: int = MTIME_NS) -> PutReady:
        self.send_event(Put(tid, name, len(data), mtime_ns, 0o644, "blake3"))
        ready = self.expect(tid, PutReady)
        assert isinstance(ready, PutReady)
        return ready

    def send_range(self, tid: int, data: bytes, start: int, end: int, credit: int, chunk: int = MiB) -> int:
        """Send ``data[start:end]`` as chunks within ``credit`` (waiting for
        CREDIT when spent); return the credit left."""
        offset = start
        while offset < end:
            while credit == 0:
                got = self.expect(tid, Credit)
                credit += got.credit
            n = min(chunk, credit, end - offset)
            self.send_event(Chunk(tid, offset, data[offset : offset + n]))
            offset += n
            credit -= n
        return credit


def make_file(path: Path, size: int, *, seed: bytes | None = None, mtime_ns: int = MTIME_NS) -> Path:
    """Write ``size`` random bytes (or ``seed`` repeated) to ``path`` with a fixed mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if seed is None:
        path.write_bytes(os.urandom(size))
    else:
        path.write_bytes((seed * (size // len(seed) + 1))[:size])
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def digest_of(path: Path) -> bytes:
    return blake3.blake3().update_mmap(str(path)).digest()


def snapshot(top: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of everything under ``top`` except the subtree
    ``skip`` (a store's root) and log files: what a test compares before and
    after to prove a daemon wrote nothing outside its root."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        if here == skip:
            dirnames.clear()
            continue
        for name in dirnames + filenames:
            path = here / name
            if path == skip or path.suffix == ".log":
                continue
            st = path.lstat()
            found[str(path.relative_to(top))] = (st.st_size if not path.is_dir() else 0, st.st_mtime_ns)
    return found


def partials(root: Path) -> dict[str, int]:
    """Partial uploads under ``root``: transfer id -> bytes held."""
    tmp = root / ".zfile" / "tmp"
    held = {}
    for p in tmp.glob("*.part") if tmp.is_dir() else ():
        try:
            held[p.stem] = p.stat().st_size
        except FileNotFoundError:  # deleted by the daemon between the listing and the stat
            continue
    return held


def peak_rss_mib(pid: int) -> float:
    """A process's peak resident set (VmHWM in /proc/PID/status), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def restart(root: Path, logs: Path, *extra: str, endpoint: str | None = None):
    """Start a daemon on ``root`` logging to a new file under ``logs`` (a
    shared log would already say "listening on" before the new daemon does)."""
    from .conftest import start_daemon

    logs.mkdir(parents=True, exist_ok=True)
    n = len(list(logs.glob("daemon-*.log")))
    return start_daemon(root, logs / f"daemon-{n}.log", *extra, endpoint=endpoint)


def all_logs(logs: Path) -> str:
    """Every log written by :func:`restart` under ``logs``, oldest first."""
    paths = sorted(logs.glob("daemon-*.log"), key=lambda p: int(p.stem.split("-")[1]))
    return "".join(p.read_text(errors="replace") for p in paths)
