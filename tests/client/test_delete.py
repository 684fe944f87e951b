"""--delete's plan for get: which local files go (only regular files zfile
would have written, under the tree, not excluded), and which directories
go with them; on a real file system, no daemon needed."""

from __future__ import annotations

import os
from pathlib import Path

from zfile.client.delete import LocalDeletions, delete_local, local_deletions
from zfile.client.filters import Filter
from zfile.client.plan import DownloadPlan
from zfile.protocol.events import Entry


def write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def entry(name: str) -> Entry:
    return Entry(name=name, size=1, mtime_ns=0, mode=0o644, algo="blake3", digest=bytes(32), received=0.0, peer="")


def plan_for(out: Path, names: list[str], stem: str = "photos") -> DownloadPlan:
    files = [(entry(f"{stem}/{n}"), out / stem / n) for n in names]
    return DownloadPlan(files, [], [], trees=[(stem, out / stem)])


def test_only_what_the_daemon_lacks_and_zfile_would_write_is_deleted(tmp_path):
    out = tmp_path / "out"
    tree = out / "photos"
    write(tree / "kept.jpg")
    old = write(tree / "old.jpg")
    deep_old = write(tree / "sub" / "gone.jpg")
    write(tree / ".big.bin.zfile-part")  # a resume's temp file: kept
    write(tree / ".big.bin.zfile-part.json")
    outside = write(tmp_path / "elsewhere" / "x.jpg")
    (tree / "link").symlink_to(outside)  # a link: never zfile's, kept
    (tree / "linkdir").symlink_to(outside.parent)  # never entered
    os.mkfifo(tree / "fifo")
    write(Path(os.fsdecode(bytes(tree) + b"/caf\xe9.jpg")))  # not UTF-8: zfile cannot have written it
    write(out / "beside.jpg")  # outside the tree: not looked at

    found = local_deletions(plan_for(out, ["kept.jpg"]))
    assert found.doomed == sorted([old, deep_old])
    # What is left is said, with why.
    assert found.kept == sorted(
        [
            (tree / "link", "a symbolic link"),
            (tree / "linkdir", "a symbolic link"),
            (tree / "fifo", "a FIFO"),
            (Path(os.fsdecode(bytes(tree) + b"/caf\xe9.jpg")), "a file whose name is not UTF-8"),
        ]
    )


def test_excluded_files_and_directories_are_never_deleted(tmp_path):
    out = tmp_path / "out"
    write(out / "photos" / "a.raw")
    write(out / "photos" / "cache" / "c.jpg")
    gone = write(out / "photos" / "b.jpg")
    (out / "photos" / "link.raw").symlink_to(gone)
    (out / "photos" / "cachelink").symlink_to(out / "photos" / "cache")
    f = Filter.from_rules(exclude=["*.raw", "cache/", "cachelink/"])
    assert local_deletions(plan_for(out, []), f) == LocalDeletions([gone], [])  # excluded: not even said


def test_a_tree_that_is_a_link_is_not_entered(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / "precious.txt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "photos").symlink_to(elsewhere)
    assert local_deletions(plan_for(out, [])) == LocalDeletions([], [])


def test_directories_this_run_emptied_go_and_no_others(tmp_path):
    out = tmp_path / "out"
    tree = out / "photos"
    a = write(tree / "a" / "b" / "old.jpg")
    keep_dir_file = write(tree / "c" / "old.jpg")
    write(tree / "c" / "link-target")
    (tree / "c" / "link").symlink_to("link-target")
    (tree / "empty-before").mkdir()
    done = delete_local([a, keep_dir_file], [tree])
    assert [d.error for d in done] == [None, None]
    assert not (tree / "a").exists()  # emptied by this run, its parent too
    assert (tree / "c").is_dir() and (tree / "c" / "link").is_symlink()  # still holds something
    assert (tree / "empty-before").is_dir()  # this run did not empty it
    assert tree.is_dir()  # the tree's own directory stays


def test_a_file_that_cannot_be_deleted_is_a_failure_of_its_own(tmp_path):
    tree = tmp_path / "out" / "photos"
    # Planned as a file, a directory by the time of the delete: unlink fails (even as root).
    now_a_dir = tree / "x.jpg"
    write(now_a_dir / "inside")
    free = write(tree / "y.jpg")
    done = delete_local([now_a_dir, free], [tree])
    assert done[0].error is not None and "cannot delete" in str(done[0].error) and done[1].error is None
    assert not free.exists() and (now_a_dir / "inside").exists()
