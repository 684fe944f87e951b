"""CPU per small file of a PUT-MANY upload, daemon and client.

Starts ``zfile serve`` on 127.0.0.1, sends FILES files of SIZE bytes in DIRS
directories with ``zfile send``, and prints the daemon's and the client's
CPU (user + system, from /proc/PID/stat and the child's rusage) per file,
in microseconds, with the daemon's peak RSS, the wall time and files/s.
The client's figure includes its start-up (about 0.3 s of CPU for the
imports), spread over the files.  CPU, not wall time: the
machine may be shared.  Usage: ``python scripts/smallcpu.py [FILES [SIZE
[DIRS [RUNS]]]]``; the store and the source live under a temporary
directory on the same file system as the current directory.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
    dirs = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    zfile = [sys.executable, "-m", "zfile"]
    with tempfile.TemporaryDirectory(dir=os.getcwd(), prefix=".smallcpu-") as tmp:
        src = Path(tmp, "src")
        for k in range(files):
            d = src / f"d{k % dirs:02d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{k:06d}").write_bytes(os.urandom(size))
        subprocess.run(["sync"], check=True)
        for run in range(runs):
            root = Path(tmp, f"store{run}")
            port = free_port()
            daemon = subprocess.Popen(
                [*zfile, "serve", "--root", str(root), "--bind", f"tcp://127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), 0.2).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
                time.sleep(0.5)
                d0 = cpu_of(daemon.pid)
                c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                w0 = time.monotonic()
                subprocess.run(
                    [*zfile, "send", "--to", f"tcp://127.0.0.1:{port}", str(src)],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                wall = time.monotonic() - w0
                c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                d1 = cpu_of(daemon.pid)
                rss = peak_rss_mib(daemon.pid)
            finally:
                daemon.terminate()
                daemon.wait()
            client = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
            stored = sum(1 for p in root.rglob("f*") if p.is_file())
            print(
                f"run {run}: {stored}/{files} stored; daemon {(d1 - d0) / files * 1e6:.0f} us/file, "
                f"client {client / files * 1e6:.0f} us/file, "
                f"peak RSS daemon {rss:.0f} MiB client {c1.ru_maxrss / 1024:.0f} MiB, "
                f"wall {wall:.2f} s, {files / wall:,.0f} files/s, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        # Deleted last, not between runs: ext4 without a journal makes the next creates pay for fresh deletions.
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
