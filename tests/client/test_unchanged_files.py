"""The local half of the quick check, against entries given as the daemon's
listing would give them: size and the mtime the plan's walk recorded, or
with -c the digest of each file whose size matches, hashed in threads."""

from __future__ import annotations

import os
from pathlib import Path

import blake3

from zfile.client import quickcheck
from zfile.client.plan import plan_upload
from zfile.client.quickcheck import Compare, local_digests, unchanged_files
from zfile.protocol.events import Entry

from ..rawpeer import MTIME_NS, make_file


def entry_of(path: Path, name: str, **change: object) -> Entry:
    st = path.stat()
    fields = {
        "name": name,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "mode": 0o644,
        "algo": "blake3",
        "digest": blake3.blake3(path.read_bytes()).digest(),
        "received": 1.0,
    }
    return Entry(**{**fields, **change})  # type: ignore[arg-type]


def test_the_walk_records_each_files_mtime_by_stored_name(tmp_path):
    make_file(tmp_path / "t" / "a.bin", 10, mtime_ns=MTIME_NS)
    make_file(tmp_path / "t" / "sub" / "b.bin", 20, mtime_ns=MTIME_NS + 7)
    plan = plan_upload([tmp_path / "t"])
    assert plan.mtime_ns == {"t/a.bin": MTIME_NS, "t/sub/b.bin": MTIME_NS + 7}
    assert sorted((name, size) for _, name, size in plan.files) == [("t/a.bin", 10), ("t/sub/b.bin", 20)]


def test_quick_check_judges_by_the_planned_size_and_mtime(tmp_path):
    for i in range(4):
        make_file(tmp_path / "t" / f"f{i}.bin", 100)
    plan = plan_upload([tmp_path / "t"])
    by_name = {name: path for path, name, _ in plan.files}
    entries = {
        "t/f0.bin": entry_of(by_name["t/f0.bin"], "t/f0.bin"),  # the same
        "t/f1.bin": entry_of(by_name["t/f1.bin"], "t/f1.bin", mtime_ns=MTIME_NS + 1),  # another mtime
        "t/f2.bin": entry_of(by_name["t/f2.bin"], "t/f2.bin", size=101),  # another size
    }  # t/f3.bin: not held by the daemon
    # The walk's stat is what counts: a file removed since is not stat'ed again.
    by_name["t/f0.bin"].unlink()
    got = unchanged_files(plan.files, entries, Compare.QUICK, plan.mtime_ns)
    assert dict(zip((n for _, n, _ in plan.files), got, strict=True)) == {
        "t/f0.bin": True,
        "t/f1.bin": False,
        "t/f2.bin": False,
        "t/f3.bin": False,
    }


def test_quick_check_stats_a_file_the_plan_has_no_mtime_for(tmp_path):
    path = make_file(tmp_path / "x.bin", 10)
    entries = {"x.bin": entry_of(path, "x.bin")}
    assert unchanged_files([(path, "x.bin", 10)], entries, Compare.QUICK) == [True]
    os.utime(path, ns=(MTIME_NS + 5, MTIME_NS + 5))
    assert unchanged_files([(path, "x.bin", 10)], entries, Compare.QUICK) == [False]
    assert unchanged_files([(path, "x.bin", 10)], entries, Compare.NONE) == [False]


def test_checksum_finds_each_changed_file_small_or_hashed_in_threads(tmp_path):
    # Small files are hashed in the calling thread, those of 256 KiB and more in the pool.
    for i in range(140):
        make_file(tmp_path / "t" / f"f{i:03d}.bin", 4096 if i % 20 else 300 << 10)
    plan = plan_upload([tmp_path / "t"])
    entries = {name: entry_of(path, name) for path, name, _ in plan.files}
    changed = {"t/f007.bin", "t/f040.bin", "t/f120.bin", "t/f139.bin"}
    for path, name, size in plan.files:
        if name in changed:  # new bytes, same size and mtime: only -c sees it
            make_file(path, size)
    gone = "t/f100.bin"
    next(path for path, name, _ in plan.files if name == gone).unlink()  # cannot be read: not unchanged
    got = dict(
        zip(
            (n for _, n, _ in plan.files),
            unchanged_files(plan.files, entries, Compare.CHECKSUM, plan.mtime_ns),
            strict=True,
        )
    )
    assert {name for name, same in got.items() if not same} == changed | {gone}
    assert all(unchanged_files(plan.files, entries, Compare.QUICK, plan.mtime_ns))


def test_checksum_needs_the_same_size_as_well_as_the_digest(tmp_path):
    path = make_file(tmp_path / "x.bin", 10)
    same_digest_other_size = entry_of(path, "x.bin", size=11)
    assert unchanged_files([(path, "x.bin", 10)], {"x.bin": same_digest_other_size}, Compare.CHECKSUM) == [False]
    assert unchanged_files([(path, "x.bin", 10)], {"x.bin": entry_of(path, "x.bin")}, Compare.CHECKSUM) == [True]
    other_algo = entry_of(path, "x.bin", algo="xxh3")
    assert unchanged_files([(path, "x.bin", 10)], {"x.bin": other_algo}, Compare.CHECKSUM) == [False]


def test_digests_made_ahead_are_those_of_the_small_files_and_are_used(tmp_path):
    small = make_file(tmp_path / "t" / "small.bin", 4096)
    large = make_file(tmp_path / "t" / "large.bin", 300 << 10)
    plan = plan_upload([tmp_path / "t"])
    ahead = local_digests(plan.files)
    assert ahead == {"t/small.bin": blake3.blake3(small.read_bytes()).digest()}
    entries = {name: entry_of(path, name) for path, name, _ in plan.files}
    assert unchanged_files(plan.files, entries, Compare.CHECKSUM, plan.mtime_ns, ahead) == [True, True]
    # The digest made ahead is the one compared: the file is not read again.
    stale = {"t/small.bin": b"\0" * 32}
    verdicts = dict(
        zip(
            (n for _, n, _ in plan.files),
            unchanged_files(plan.files, entries, Compare.CHECKSUM, plan.mtime_ns, stale),
            strict=True,
        )
    )
    assert verdicts == {"t/large.bin": True, "t/small.bin": False}
    assert large.exists()


def test_digests_ahead_stop_at_their_budget_and_mark_an_unreadable_or_resized_file(tmp_path, monkeypatch):
    monkeypatch.setattr(quickcheck, "_AHEAD_BYTES", 3 * 4096)
    paths = [make_file(tmp_path / f"f{i}.bin", 4096) for i in range(5)]
    files = [(p, p.name, 4096) for p in paths]
    paths[0].unlink()
    paths[1].write_bytes(b"longer" * 1000)
    ahead = local_digests(files)
    assert ahead == {"f0.bin": None, "f1.bin": None, "f2.bin": blake3.blake3(paths[2].read_bytes()).digest()}
