"""The benchmark's tools, one timed run each: ``zfile send`` and ``zfile get``,
``rsync`` to and from an ``rsync --daemon`` module (with and without
``--fsync``), ``scp`` to and from a private sshd, ``socat`` (the raw pipe)
and ``dd conv=fsync`` with and without ``oflag=direct`` (the disk's durable
write rate).

Every server is started for one run under ``/usr/bin/time -v``, stopped after
it, and every destination is compared with its source outside the timed
interval.  Destinations go under :attr:`Bench.dest` (the work directory on
the real disk, or the small case's fresh file system).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from _benchlib import (
    DISK_BUFFERED,
    DISK_DIRECT,
    SOCAT_BLOCK,
    SSHD,
    ZFILE,
    Run,
    Timed,
    Usage,
    check_copy,
    free_port,
    listening,
    sync,
    wait_until,
)

Tool = Callable[[str, Path, int, int], Run]


class Bench:
    def __init__(self, work: Path, out: Path) -> None:
        self.work = work
        self.out = out
        self.dest = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.live: list[Timed] = []
        # Where discard() moves destinations while a case keeps them (case_small).
        self.spent: Path | None = None
        self.seq = 0
        self._ssh: Path | None = None
        self.baseline: str | None = None
        # The store ``zfile get`` reads from (case_get fills it).
        self.get_store: Path | None = None

    def _paths(self, label: str) -> tuple[Path, Path]:
        self.seq += 1
        return self.logs / f"{self.seq:04d}-{label}.time", self.logs / f"{self.seq:04d}-{label}.log"

    def serve(self, label: str, cmd: list[str], ready: Callable[[Timed], bool], **kw) -> Timed:
        report, log = self._paths(label + "-server")
        proc = Timed(cmd, report, log, **kw)
        self.live.append(proc)
        wait_until(lambda: ready(proc), label, proc)
        return proc

    def client(self, label: str, cmd: list[str], **kw) -> tuple[float, Usage]:
        report, log = self._paths(label + "-client")
        began = time.monotonic()
        proc = Timed(cmd, report, log, **kw)
        try:
            usage = proc.wait(timeout=3600)
        except BaseException:
            proc.kill()  # an interrupted run leaves no writer behind (the small case unmounts after it)
            raise
        return time.monotonic() - began, usage

    def retire(self, proc: Timed) -> Usage:
        usage = proc.stop()
        self.live.remove(proc)
        return usage

    def fresh(self, name: str) -> Path:
        """An empty destination directory ``name`` under :attr:`dest`."""
        path = self.dest / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        return path

    def discard(self, path: Path) -> None:
        """Remove a run's destination, or while :attr:`spent` is set move it
        there to be removed after the case.  ext4 without a journal skips
        inodes freed in the last minute when it allocates new ones, scanning
        the inode table for each: deleting one run's 10,000 files made the
        next run of any tool pay for the previous one's clean-up."""
        if self.spent is None:
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            self.spent.mkdir(exist_ok=True)
            path.rename(self.spent / f"{len(list(self.spent.iterdir()))}-{path.name}")

    def cleanup(self) -> None:
        for proc in self.live:
            try:
                proc.kill()
            except (OSError, subprocess.SubprocessError):
                pass
        self.live.clear()

    def timed_pair(self, label: str, server: Timed, cmd: list[str]) -> tuple[float, Usage, Usage, float]:
        """Run client ``cmd`` against the started ``server``, then stop it:
        wall, client usage, server usage, and the server's CPU before the client."""
        try:
            sync()
            before = server.cpu_now()
            wall, cu = self.client(label, cmd)
        finally:
            su = self.retire(server)
        return wall, cu, su, before

    # zfile -------------------------------------------------------------------------

    def zfile_daemon(self, root: Path, *extra: str, exe: str = ZFILE) -> tuple[Timed, str]:
        port = free_port()
        endpoint = f"tcp://127.0.0.1:{port}"
        cmd = [exe, "serve", "--bind", endpoint, "--root", str(root), *extra]
        proc = self.serve("zfile", cmd, lambda p: "listening on" in p.log.read_text(errors="replace"))
        return proc, endpoint

    def run_zfile(
        self, case: str, src: Path, nbytes: int, nfiles: int, *, daemon_extra=(), client_extra=(), exe: str = ZFILE
    ) -> Run:
        root = self.dest / "zstore"
        shutil.rmtree(root, ignore_errors=True)
        daemon, endpoint = self.zfile_daemon(root, *daemon_extra, exe=exe)
        cmd = [exe, "send", str(src), "--to", endpoint, "--quiet", *client_extra]
        wall, cu, su, before = self.timed_pair("zfile", daemon, cmd)
        check_copy(src, root / src.name, case)
        self.discard(root)
        return Run("zfile" if exe == ZFILE else "zfile (baseline)", case, nbytes, nfiles, wall, cu, su, before)

    def run_baseline(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        assert self.baseline is not None
        return self.run_zfile(case, src, nbytes, nfiles, exe=self.baseline)

    def zfile_tools(self) -> list[Tool]:
        return [self.run_zfile] + ([self.run_baseline] if self.baseline else [])

    def store_for_get(self, src: Path) -> None:
        """Store ``src`` in :attr:`get_store` with ``zfile send`` (untimed)."""
        self.get_store = self.work / "zget-store"
        shutil.rmtree(self.get_store, ignore_errors=True)
        daemon, endpoint = self.zfile_daemon(self.get_store)
        self.timed_pair("zfile-store", daemon, [ZFILE, "send", str(src), "--to", endpoint, "--quiet"])
        check_copy(src, self.get_store / src.name, "get (stored copy)")

    def run_zfile_get(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        assert self.get_store is not None
        dest = self.fresh("zget-dest")
        daemon, endpoint = self.zfile_daemon(self.get_store)
        cmd = [ZFILE, "get", src.name, "--from", endpoint, "-o", str(dest), "--quiet"]
        wall, cu, su, before = self.timed_pair("zfile-get", daemon, cmd)
        check_copy(src, dest / src.name, case)
        self.discard(dest)
        return Run("zfile get", case, nbytes, nfiles, wall, cu, su, before)

    # rsync daemon ------------------------------------------------------------------

    def rsyncd(self, path: Path, read_only: bool) -> tuple[Timed, int]:
        port = free_port()
        conf = self.work / "rsyncd.conf"
        user = "uid = root\ngid = root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"use chroot = no\n{user}pid file = {self.work}/rsyncd.pid\n"
            f"[bench]\n    path = {path}\n    read only = {'yes' if read_only else 'no'}\n"
        )
        cmd = ["rsync", "--daemon", "--no-detach", f"--config={conf}", f"--port={port}", "--address=127.0.0.1"]
        return self.serve("rsync", cmd, lambda p: listening(port)), port

    def _rsync(self, case: str, src: Path, nbytes: int, nfiles: int, fsync: bool) -> Run:
        dest = self.fresh("rsync-dest")
        daemon, port = self.rsyncd(dest, read_only=False)
        args = (["-a", "-W"] if src.is_dir() else ["-W"]) + (["--fsync"] if fsync else [])
        cmd = ["rsync", *args, str(src), f"rsync://127.0.0.1:{port}/bench/"]
        wall, cu, su, before = self.timed_pair("rsync", daemon, cmd)
        check_copy(src, dest / src.name, case)
        self.discard(dest)
        return Run("rsync --fsync" if fsync else "rsync", case, nbytes, nfiles, wall, cu, su, before)

    def run_rsync(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        return self._rsync(case, src, nbytes, nfiles, fsync=False)

    def run_rsync_fsync(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        """rsync with ``--fsync``: the receiver fsyncs every file, as zfile does."""
        return self._rsync(case, src, nbytes, nfiles, fsync=True)

    def run_rsync_pull_fsync(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        """``rsync -W --fsync`` pulling ``src`` from a read-only module over its directory."""
        dest = self.fresh("rsync-pull-dest")
        daemon, port = self.rsyncd(src.parent, read_only=True)
        cmd = ["rsync", "-W", "--fsync", f"rsync://127.0.0.1:{port}/bench/{src.name}", f"{dest}/"]
        wall, cu, su, before = self.timed_pair("rsync-pull", daemon, cmd)
        check_copy(src, dest / src.name, case)
        self.discard(dest)
        return Run("rsync --fsync", case, nbytes, nfiles, wall, cu, su, before)

    # scp to and from a private sshd -------------------------------------------------

    def ssh_dir(self) -> Path:
        if self._ssh is not None:
            return self._ssh
        d = self.work / "ssh"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(mode=0o700)
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
        shutil.copy(d / "client_key.pub", d / "authorized_keys")
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        self._ssh = d
        return d

    def sshd(self) -> tuple[Timed, int]:
        d = self.ssh_dir()
        port = free_port()
        conf = d / "sshd_config"
        conf.write_text(
            f"ListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n"
            f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "Subsystem sftp internal-sftp\n"
        )
        proc = self.serve("sshd", [SSHD, "-D", "-e", "-f", str(conf), "-p", str(port)], lambda p: listening(port))
        return proc, port

    def scp_cmd(self, port: int) -> list[str]:
        d = self.ssh_dir()
        return [
            "scp", "-q", "-P", str(port), "-i", str(d / "client_key"), "-c", "aes128-gcm@openssh.com",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip

    def run_scp(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        dest = self.fresh("scp-dest")
        daemon, port = self.sshd()
        args = ["-r"] if src.is_dir() else []
        cmd = [*self.scp_cmd(port), *args, str(src), f"root@127.0.0.1:{dest}/"]
        wall, cu, su, before = self.timed_pair("scp", daemon, cmd)
        check_copy(src, dest / src.name, case)
        self.discard(dest)
        return Run("scp", case, nbytes, nfiles, wall, cu, su, before)

    def run_scp_pull(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        dest = self.fresh("scp-pull-dest")
        daemon, port = self.sshd()
        cmd = [*self.scp_cmd(port), f"root@127.0.0.1:{src}", f"{dest}/"]
        wall, cu, su, before = self.timed_pair("scp-pull", daemon, cmd)
        check_copy(src, dest / src.name, case)
        self.discard(dest)
        return Run("scp", case, nbytes, nfiles, wall, cu, su, before)

    # socat: the raw pipe; dd: the disk ------------------------------------------------

    def run_socat(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        dest = self.fresh("socat-dest")
        port = free_port()
        b = str(SOCAT_BLOCK)
        server_cmd = ["socat", "-u", "-b", b, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr",
                      f"OPEN:{dest / src.name},creat,trunc,wronly"]  # fmt: skip
        server = self.serve("socat", server_cmd, lambda p: listening(port))
        try:
            sync()
            began = time.monotonic()
            _, cu = self.client("socat", ["socat", "-u", "-b", b, f"OPEN:{src},rdonly", f"TCP:127.0.0.1:{port}"])
            su = server.wait(timeout=600)
            wall = time.monotonic() - began
            self.live.remove(server)
        except BaseException:
            self.cleanup()
            raise
        check_copy(src, dest / src.name, case)
        shutil.rmtree(dest, ignore_errors=True)
        return Run("socat", case, nbytes, nfiles, wall, cu, su)

    def _disk(self, case: str, src: Path, nbytes: int, nfiles: int, direct: bool) -> Run:
        dest = self.fresh("disk-dest")
        sync()
        how = ["bs=16M", "oflag=direct"] if direct else ["bs=4M"]
        cmd = ["dd", f"if={src}", f"of={dest / src.name}", *how, "conv=fsync", "status=none"]
        wall, cu = self.client("dd", cmd)
        check_copy(src, dest / src.name, case)
        shutil.rmtree(dest, ignore_errors=True)
        return Run(DISK_DIRECT if direct else DISK_BUFFERED, case, nbytes, nfiles, wall, cu, Usage())

    def run_disk_direct(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        """``dd oflag=direct conv=fsync`` of ``src`` (in the page cache) to a new
        file: the rate the disk itself takes bytes durably, the limit of any
        transfer that fsyncs its file."""
        return self._disk(case, src, nbytes, nfiles, direct=True)

    def run_disk_buffered(self, case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        """``dd conv=fsync`` through the page cache: what ``cp`` and one fsync get."""
        return self._disk(case, src, nbytes, nfiles, direct=False)
