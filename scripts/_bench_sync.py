"""The ``sync`` case of ``scripts/bench``: re-synchronising what a daemon
already holds, rsync-style, and streaming through stdin and stdout.

- ``sync unchanged``: a tree of small files (4 KiB in 20 directories) sent
  again to a daemon that holds all of it: ``zfile send DIR`` (the quick check,
  size and mtime) against ``rsync -a`` to an ``rsync --daemon`` module that
  holds it;
- ``sync unchanged -c``: the same with ``zfile send -c`` (BLAKE3 digests)
  against ``rsync -a -c`` (MD5 of both sides' files);
- ``sync one changed``: one file of the tree rewritten (same size, new bytes
  and mtime) before each round, so that each tool finds one changed file
  (files/s are of the tree's files, which both examine); the bytes zfile
  sent come from its ``--json`` report and must be that one file's;
- ``sync cat``: ``zfile cat`` of the large file to ``/dev/null`` against
  ``zfile get`` of it into a new directory;
- ``sync stdin``: ``cat FILE | zfile send - --name NAME`` against ``zfile
  send FILE``, each into a fresh store.

As elsewhere, every server is started for one run under ``/usr/bin/time -v``
and stopped after it, runs alternate between the tools of a row, and every
destination is compared with its source after the run.  The stores and the
rsync module are filled once, untimed, before the re-sync rows.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from _bench_tools import Bench
from _benchlib import ZFILE, Run, check_copy, sync

DIRS = 20


def make_tree(path: Path, count: int, size: int) -> Path:
    """``count`` files of ``size`` random bytes spread over :data:`DIRS`
    directories under ``path`` (made once, kept between runs)."""
    if path.is_dir() and sum(1 for p in path.rglob("*") if p.is_file()) == count:
        return path
    shutil.rmtree(path, ignore_errors=True)
    for i in range(count):
        d = path / f"d{i % DIRS:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.bin").write_bytes(os.urandom(size))
    return path


def _report(log: Path) -> dict:
    """The one node's object of ``zfile send --json`` (the JSON array is all
    the command writes to stdout; the log holds stdout and stderr)."""
    text = log.read_text(errors="replace")
    return json.loads(text[text.index("[") :])[0]


class SyncCase:
    def __init__(self, b: Bench, tree: Path, large: Path) -> None:
        self.b = b
        self.tree = tree
        self.large = large
        self.nfiles = sum(1 for p in tree.rglob("*") if p.is_file())
        self.nbytes = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
        self.zroot = b.work / "sync-zstore"
        self.rdest = b.work / "sync-rsync-dest"
        for d in (self.zroot, self.rdest):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        self.sent_bytes: list[int] = []

    # The tools of the tree rows; each run starts its own server on the kept destination.

    def zfile_send(self, label: str, *extra: str, json_log: bool = False) -> tuple[float, object, object, float, Path]:
        daemon, endpoint = self.b.zfile_daemon(self.zroot)
        cmd = [ZFILE, "send", str(self.tree), "--to", endpoint, *extra, "--json" if json_log else "--quiet"]
        wall, cu, su, before = self.b.timed_pair(label, daemon, cmd)
        log = self.b.logs / f"{self.b.seq:04d}-{label}-client.log"  # the client's run is the last numbered
        check_copy(self.tree, self.zroot / self.tree.name, "sync")
        return wall, cu, su, before, log

    def rsync(self, label: str, *extra: str) -> tuple[float, object, object, float]:
        daemon, port = self.b.rsyncd(self.rdest, read_only=False)
        cmd = ["rsync", "-a", *extra, str(self.tree), f"rsync://127.0.0.1:{port}/bench/"]
        wall, cu, su, before = self.b.timed_pair(label, daemon, cmd)
        check_copy(self.tree, self.rdest / self.tree.name, "sync")
        return wall, cu, su, before

    def fill(self) -> None:
        """The first, untimed copy into both destinations."""
        self.zfile_send("sync-fill-zfile")
        self.rsync("sync-fill-rsync")

    def unchanged(self, case: str, checksum: bool) -> list[Run]:
        flag = ("-c",) if checksum else ()
        wall, cu, su, before, _ = self.zfile_send("sync-zfile", *flag)
        z = Run("zfile send" + (" -c" if checksum else ""), case, self.nbytes, self.nfiles, wall, cu, su, before)
        wall, cu, su, before = self.rsync("sync-rsync", *flag)
        r = Run("rsync -a" + (" -c" if checksum else ""), case, self.nbytes, self.nfiles, wall, cu, su, before)
        return [z, r]

    def one_changed(self, case: str, victim: Path) -> list[Run]:
        size = victim.stat().st_size
        victim.write_bytes(os.urandom(size))
        wall, cu, su, before, log = self.zfile_send("sync-zfile-one", json_log=True)
        report = _report(log)
        if report["result"] != "ok" or report.get("sent") != 1 or report["bytes"] != size:
            raise RuntimeError(f"sync: zfile sent {report.get('sent')} file(s), {report['bytes']} B for one changed "
                               f"file of {size} B")  # fmt: skip
        self.sent_bytes.append(report["bytes"])
        # Counted as the tree's files and bytes, as both tools examine all of them.
        z = Run("zfile send", case, self.nbytes, self.nfiles, wall, cu, su, before)
        wall, cu, su, before = self.rsync("sync-rsync-one")
        return [z, Run("rsync -a", case, self.nbytes, self.nfiles, wall, cu, su, before)]

    # The streaming rows.

    def cat(self, case: str) -> Run:
        """``zfile cat`` of the large file (stored by ``store_for_get``) to /dev/null."""
        assert self.b.get_store is not None
        daemon, endpoint = self.b.zfile_daemon(self.b.get_store)
        cmd = ["bash", "-c", 'exec "$0" cat "$1" --from "$2" > /dev/null', ZFILE, self.large.name, endpoint]
        wall, cu, su, before = self.b.timed_pair("zfile-cat", daemon, cmd)
        size = self.large.stat().st_size
        return Run("zfile cat", case, size, 1, wall, cu, su, before)

    def send(self, case: str, stdin: bool) -> Run:
        root = self.b.work / "sync-stream-store"
        shutil.rmtree(root, ignore_errors=True)
        daemon, endpoint = self.b.zfile_daemon(root)
        if stdin:
            script = 'cat "$1" | "$0" send - --name "$2" --to "$3" --quiet'
            cmd = ["bash", "-c", script, ZFILE, str(self.large), self.large.name, endpoint]
        else:
            cmd = [ZFILE, "send", str(self.large), "--to", endpoint, "--quiet"]
        wall, cu, su, before = self.b.timed_pair("zfile-stdin" if stdin else "zfile-send", daemon, cmd)
        check_copy(self.large, root / self.large.name, case)
        shutil.rmtree(root, ignore_errors=True)
        size = self.large.stat().st_size
        return Run("zfile send - (from cat)" if stdin else "zfile send FILE", case, size, 1, wall, cu, su, before)


def case_sync(b: Bench, tree: Path, large: Path, runs: int, stream_runs: int, results: list[Run]) -> str:
    """Every row of the case, ``runs`` alternating runs per tool of the tree
    rows and ``stream_runs`` of the streaming rows; returns a note with the
    bytes zfile sent for the one changed file."""
    c = SyncCase(b, tree, large)
    try:
        c.fill()
        files = sorted(p for p in tree.rglob("*") if p.is_file())
        for case, checksum in (("sync unchanged", False), ("sync unchanged -c", True)):
            for i in range(runs):
                for r in c.unchanged(case, checksum):
                    results.append(r)
                    print(f"  {case} run {i + 1}/{runs} {r.tool:14s} {r.nfiles / r.wall:9,.0f} files/s "
                          f"{r.wall:6.2f} s", file=sys.stderr)  # fmt: skip
        for i in range(runs):
            for r in c.one_changed("sync one changed", files[(i * 7919) % len(files)]):
                results.append(r)
                print(f"  sync one changed run {i + 1}/{runs} {r.tool:14s} {r.wall:6.2f} s", file=sys.stderr)
        b.store_for_get(large)
        for i in range(stream_runs):
            sync()
            for r in (c.cat("sync cat"), b.run_zfile_get("sync cat", large, large.stat().st_size, 1)):
                results.append(r)
                print(f"  sync cat run {i + 1}/{stream_runs} {r.tool:18s} {r.nbytes / r.wall / 1e6:7.1f} MB/s",
                      file=sys.stderr)  # fmt: skip
            for r in (c.send("sync stdin", stdin=True), c.send("sync stdin", stdin=False)):
                results.append(r)
                print(f"  sync stdin run {i + 1}/{stream_runs} {r.tool:18s} {r.nbytes / r.wall / 1e6:7.1f} MB/s",
                      file=sys.stderr)  # fmt: skip
    finally:
        b.cleanup()
        for d in (c.zroot, c.rdest, b.get_store):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)
        b.get_store = None
    sent = ", ".join(f"{n:,}" for n in c.sent_bytes)
    return f"sync one changed: zfile sent {sent} B per run (its --json report; one file is {tree_file_size(tree):,} B)"


def tree_file_size(tree: Path) -> int:
    return next(p for p in tree.rglob("*") if p.is_file()).stat().st_size
