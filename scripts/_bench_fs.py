"""A freshly made file system for the benchmark's small-file destinations.

The shared disk's state swings small-file rates several-fold: after tens of
thousands of files have been created and deleted on it, the same loop runs at
a third of its speed.  So the small case writes into an ext4 made for it:
a sparse image file, ``mkfs.ext4`` with every inode table and the journal
written up front (no lazy initialisation running in the background during
the runs), attached with ``losetup --direct-io=on`` (the loop device's I/O
bypasses the page cache of the image file, so there is one page cache, not
two) and mounted; afterwards it is unmounted, detached and removed, on
failure too.  Large cases stay on the real disk: a loop device changes
large sequential writes.

Needs root, ``losetup``, ``mkfs.ext4``, ``mount`` and ``umount``; without
them, or when a step fails, the destinations fall back to the shared disk
with a warning.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("losetup", "mkfs.ext4", "mount", "umount")


def fresh_fs_blocker(euid: int, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """Why a fresh file system cannot be made here (a phrase), or None when it can."""
    if euid != 0:
        return "not root"
    missing = [tool for tool in TOOLS if which(tool) is None]
    return f"no {', '.join(missing)}" if missing else None


def image_geometry(files: int, file_size: int) -> tuple[int, int]:
    """Image bytes and inode count for ``files`` files of ``file_size`` bytes
    (every run's files together, as the small case keeps them until its end):
    room for three times the data, in whole MiB, at least 512 MiB, and an
    inode per file, per directory and per temporary file, with slack."""
    data = files * max(file_size, 4096)
    size = max(512 << 20, 3 * data)
    return (size + (1 << 20) - 1) & ~((1 << 20) - 1), 2 * files + 16_384


@dataclass
class Place:
    """Where the small case writes: ``path``, and ``what`` it is (for the table's notes)."""

    path: Path
    what: str
    fresh: bool


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


def _warn(text: str) -> None:
    print(f"bench: warning: {text}", file=sys.stderr)


class _Mounted:
    """The image, its loop device and its mount, each undone in reverse order by :meth:`close`."""

    def __init__(self, work: Path) -> None:
        self.image = work / "small-fs.img"
        self.mnt = work / "small-fs"
        self.dev: str | None = None
        self.dio = False
        self.mounted = False

    def open(self, size: int, inodes: int) -> None:
        """Make, attach and mount; on failure the caller still calls :meth:`close`."""
        self.image.unlink(missing_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(size)
        self.mnt.mkdir(exist_ok=True)
        _run(["mkfs.ext4", "-q", "-F", "-N", str(inodes), "-E", "lazy_itable_init=0,lazy_journal_init=0",
              str(self.image)])  # fmt: skip
        self.dev = _run(["losetup", "--find", "--show", "--direct-io=on", str(self.image)])
        self.dio = _run(["losetup", "--noheadings", "--output", "DIO", self.dev]) == "1"
        _run(["mount", "-t", "ext4", self.dev, str(self.mnt)])
        self.mounted = True

    def close(self) -> None:
        if self.mounted:
            for attempt in range(10):
                try:
                    _run(["umount", str(self.mnt)])
                    break
                except RuntimeError as exc:
                    if attempt == 9:
                        _warn(f"{exc}; detaching lazily (umount --lazy)")
                        subprocess.run(["umount", "--lazy", str(self.mnt)], capture_output=True)
                    time.sleep(0.3)  # a process that was just killed may still hold a file there
            self.mounted = False
        if self.dev is not None:
            try:
                _run(["losetup", "--detach", self.dev])
            except RuntimeError as exc:
                _warn(f"{exc}: the loop device stays attached")
            self.dev = None
        self.image.unlink(missing_ok=True)
        try:
            self.mnt.rmdir()
        except OSError:
            pass


@contextmanager
def small_fs(work: Path, files: int, file_size: int, want_fresh: bool = True) -> Iterator[Place]:
    """A directory for the small case's destinations: the root of a fresh
    ext4 (module docstring) for the whole ``with`` block, or, when that is
    not wanted or not possible, ``work/small-dest`` on the shared disk after
    a warning on stderr.  The fresh file system is unmounted, detached and
    its image removed when the block ends, however it ends; the fallback
    directory is removed."""
    blocker = None if want_fresh else "--small-fs shared"
    if blocker is None:
        blocker = fresh_fs_blocker(os.geteuid())
    mounted = None
    if blocker is None:
        size, inodes = image_geometry(files, file_size)
        mounted = _Mounted(work)
        try:
            mounted.open(size, inodes)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            blocker = str(exc)
            mounted.close()
            mounted = None
        except BaseException:
            mounted.close()
            raise
    if mounted is not None:
        dio = "direct I/O on" if mounted.dio else "direct I/O refused by the kernel"
        what = (f"a fresh ext4 (`mkfs.ext4` on a {mounted.image.stat().st_size >> 20} MiB image, "
                f"`losetup --direct-io=on`: {dio}), made for the case and removed after it")  # fmt: skip
        print(f"bench: small-file destinations on {what}", file=sys.stderr)
        try:
            yield Place(mounted.mnt, what, True)
        finally:
            mounted.close()
        return
    _warn(f"small-file destinations on the shared disk ({blocker}); its state can swing the small case several-fold")
    where = work / "small-dest"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir()
    try:
        yield Place(where, f"the shared disk ({blocker}), not a fresh file system", False)
    finally:
        shutil.rmtree(where, ignore_errors=True)
