"""What the benchmark's cases share: paths of the tools, process timing
(``/usr/bin/time -v``, ``/proc/PID/stat``), free ports, data sets, copy
checks, medians and ratios."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import blake3

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
ZFILE = str(VENV_BIN / "zfile")
TIME = "/usr/bin/time"
SSHD = "/usr/sbin/sshd"
MiB = 1 << 20
GiB = 1 << 30
SOCAT_BLOCK = 262144
# The large case's disk rows (tool names): the device's durable write rate, and through the page cache.
DISK_DIRECT = "disk (dd oflag=direct)"
DISK_BUFFERED = "disk (dd, page cache)"
# The small case's runs of one file each: what a tool costs before its first file.
SMALL_ONE = "small, 1 file"


# -- measuring ------------------------------------------------------------------


@dataclass
class Usage:
    """What ``/usr/bin/time -v`` reports for one process (and its reaped children)."""

    wall: float = 0.0  # seconds
    cpu: float = 0.0  # user + system seconds
    rss_kib: int = 0  # peak resident set size, KiB


def parse_time_v(path: Path) -> Usage:
    usage = Usage()
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.strip().rpartition(": ")
        if key in ("User time (seconds)", "System time (seconds)"):
            usage.cpu += float(value)
        elif key == "Maximum resident set size (kbytes)":
            usage.rss_kib = int(value)
        elif key.startswith("Elapsed (wall clock) time"):
            parts = [float(p) for p in value.split(":")]
            usage.wall = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    return usage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """True when something listens on 127.0.0.1:port (read from /proc, so no
    probe connection is spent: socat accepts exactly one)."""
    want = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(f.split()[1] == want and f.split()[3] == "0A" for f in lines)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and of its reaped children so far
    (``utime + stime + cutime + cstime``, fields 14-17 of ``/proc/PID/stat``,
    proc(5)); 0.0 once the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # fields[0] is field 3 (state), so field 14 is fields[11].
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_exit(proc: subprocess.Popen, timeout: float | None = None) -> int:
    """Wait for ``proc`` to exit and reap it; its return code.  With a
    timeout, ``Popen.wait`` polls, sleeping up to 50 ms between looks, which
    put every wall time on a 50 ms step (0.17, 0.22, 0.27 s) and made the
    ratios of short runs jump by a step; a pidfd (pidfd_open(2)) wakes at
    the exit itself.  subprocess.TimeoutExpired as ``Popen.wait`` raises it."""
    if timeout is not None and proc.returncode is None:
        try:
            fd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # no pidfd here: the polling wait, with its step
            return proc.wait(timeout=timeout)
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
        if not ready:
            raise subprocess.TimeoutExpired(proc.args, timeout)
    return proc.wait()


class Timed:
    """A process run under ``/usr/bin/time -v``.  Stopping signals the measured
    process itself: killing ``time`` would lose its report."""

    def __init__(self, cmd: list[str], report: Path, log: Path, **kw) -> None:
        self.report = report
        self.log = log
        self.started = time.monotonic()
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [TIME, "-v", "-o", str(report), *cmd], stdout=out, stderr=subprocess.STDOUT, **kw
            )

    def child(self) -> int | None:
        kids = children(self.proc.pid)
        return kids[0] if kids else None

    def cpu_now(self) -> float:
        """CPU seconds the measured process has used so far (0.0 before it started)."""
        pid = self.child()
        return proc_cpu(pid) if pid is not None else 0.0

    def wait(self, timeout: float | None = None) -> Usage:
        wait_exit(self.proc, timeout)
        usage = parse_time_v(self.report)
        if self.proc.returncode != 0:
            raise RuntimeError(f"{self.log.name}: exit {self.proc.returncode}\n{self.log.read_text(errors='replace')}")
        return usage

    def stop(self, timeout: float = 30.0) -> Usage:
        """SIGTERM the measured process, after its forked session children
        (sshd, rsync daemon) have finished, so their peak RSS is counted."""
        pid = self.child()
        if pid is not None:
            deadline = time.monotonic() + 5
            while children(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(pid, signal.SIGTERM)
        wait_exit(self.proc, timeout)
        return parse_time_v(self.report)

    def kill(self) -> None:
        if self.proc.poll() is None:
            pid = self.child()
            os.kill(pid if pid is not None else self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_until(check: Callable[[], bool], what: str, proc: Timed, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.proc.returncode}:\n{proc.log.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{proc.log.read_text(errors='replace')}")
        time.sleep(0.02)


def sync() -> None:
    # Dirty pages of the previous run must not be flushed on the next one's time.
    os.sync()


def digest_of(path: Path) -> str:
    return blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(str(path)).hexdigest()


@dataclass
class Run:
    """One timed run of one tool: ``nbytes`` in ``nfiles`` files in ``wall``
    seconds.  ``server_before`` is the CPU seconds the server had used when the
    client started (its own start-up), so ``server.cpu - server_before`` is
    what the transfer cost it."""

    tool: str
    case: str
    nbytes: int
    nfiles: int
    wall: float
    client: Usage
    server: Usage
    server_before: float = 0.0


# -- the tools --------------------------------------------------------------------


def check_copy(src: Path, dest: Path, case: str) -> None:
    """The run counts only if the destination holds the source's bytes."""
    if src.is_dir():
        want = sorted((p.relative_to(src), p.stat().st_size) for p in src.rglob("*") if p.is_file())
        got = sorted((p.relative_to(dest), p.stat().st_size) for p in dest.rglob("*") if p.is_file())
        if want != got:
            raise RuntimeError(f"{case}: {dest} does not match {src} ({len(got)} of {len(want)} files)")
        return
    if not dest.is_file() or dest.stat().st_size != src.stat().st_size:
        raise RuntimeError(f"{case}: {dest} is missing or has the wrong size")
    if digest_of(dest) != digest_of(src):
        raise RuntimeError(f"{case}: {dest} differs from {src}")


def make_random(path: Path, size: int) -> Path:
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, 64 * MiB)
                f.write(os.urandom(n))
                left -= n
    return path


def make_repeated(path: Path, block: Path, size: int) -> Path:
    """A large file made of copies of ``block`` (cheap to create; zfile neither
    compresses nor deduplicates, so repeated content costs it the same)."""
    if not path.exists() or path.stat().st_size != size:
        chunk = block.stat().st_size
        with open(path, "wb") as out, open(block, "rb") as src:
            for _ in range(size // chunk):
                src.seek(0)
                shutil.copyfileobj(src, out, 16 * MiB)
    return path


def make_small(path: Path, count: int, size: int) -> Path:
    if not path.is_dir() or len(list(path.iterdir())) != count:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        for i in range(count):
            (path / f"f{i:05d}.bin").write_bytes(os.urandom(size))
    return path


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def span(values: list[float], fmt: str) -> str:
    """``median (min–max)`` of ``values``, each formatted with ``fmt``."""
    return f"{format(med(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def ratio_span(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """``med(a) / med(b)`` and the lowest and highest ratio the ranges allow
    (``min(a) / max(b)``, ``max(a) / min(b)``), for values that are all > 0."""
    return med(a) / med(b), min(a) / max(b), max(a) / min(b)
