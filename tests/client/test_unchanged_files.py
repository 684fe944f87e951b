"""The client's half of the quick check: the walk's sizes and mtimes sent in
CHECK requests to a real daemon, the verdicts it answers from its catalog,
and with -c the local hashing of each file whose size the daemon holds."""

from __future__ import annotations

import os
from pathlib import Path

from zfile.client import ops
from zfile.client.client import Client
from zfile.client.plan import plan_upload
from zfile.client.quickcheck import Compare, unchanged_uploads
from zfile.client.tree import send_paths
from zfile.protocol.codec import MAX_CHECK_FILES
from zfile.protocol.events import CHECK_ABSENT, CHECK_DIFFERS, CHECK_SAME

from ..rawpeer import MTIME_NS, digest_of, make_file


def test_the_walk_records_each_files_mtime_by_stored_name(tmp_path):
    make_file(tmp_path / "t" / "a.bin", 10, mtime_ns=MTIME_NS)
    make_file(tmp_path / "t" / "sub" / "b.bin", 20, mtime_ns=MTIME_NS + 7)
    plan = plan_upload([tmp_path / "t"])
    assert plan.mtime_ns == {"t/a.bin": MTIME_NS, "t/sub/b.bin": MTIME_NS + 7}
    assert sorted((name, size) for _, name, size in plan.files) == [("t/a.bin", 10), ("t/sub/b.bin", 20)]


async def sent(client: Client, root: Path) -> None:
    outcomes = await send_paths(client, [root])
    assert all(o.error is None for o in outcomes), outcomes


async def test_quick_check_judges_by_the_planned_size_and_mtime(daemon, tmp_path):
    for i in range(3):
        make_file(tmp_path / "t" / f"f{i}.bin", 100)
    async with Client(daemon.endpoint) as client:
        await sent(client, tmp_path / "t")
        os.utime(tmp_path / "t" / "f1.bin", ns=(MTIME_NS + 1, MTIME_NS + 1))  # another mtime
        make_file(tmp_path / "t" / "f2.bin", 101)  # another size
        make_file(tmp_path / "t" / "f3.bin", 100)  # not held by the daemon
        plan = plan_upload([tmp_path / "t"])
        # The walk's stat is what counts: a file removed since is not stat'ed again.
        digest = digest_of(tmp_path / "t" / "f0.bin")
        (tmp_path / "t" / "f0.bin").unlink()
        got = await unchanged_uploads(client, plan.files, Compare.QUICK, plan.mtime_ns)
    assert dict(zip((n for _, n, _ in plan.files), got, strict=True)) == {
        "t/f0.bin": (True, digest),
        "t/f1.bin": (False, None),
        "t/f2.bin": (False, None),
        "t/f3.bin": (False, None),
    }


async def test_quick_check_stats_a_file_the_plan_has_no_mtime_for(daemon, tmp_path):
    path = make_file(tmp_path / "x.bin", 10)
    async with Client(daemon.endpoint) as client:
        await sent(client, path)
        files = [(path, "x.bin", 10)]
        assert await unchanged_uploads(client, files, Compare.QUICK) == [(True, digest_of(path))]
        os.utime(path, ns=(MTIME_NS + 5, MTIME_NS + 5))
        assert await unchanged_uploads(client, files, Compare.QUICK) == [(False, None)]
        assert await unchanged_uploads(client, files, Compare.NONE) == [(False, None)]
        path.unlink()  # cannot be stat'ed: not unchanged, and not asked about
        assert await unchanged_uploads(client, files, Compare.QUICK) == [(False, None)]


async def test_checksum_finds_each_changed_file_small_or_hashed_in_threads(daemon, tmp_path):
    # Small files are hashed in the calling thread, those of 256 KiB and more in the pool.
    for i in range(140):
        make_file(tmp_path / "t" / f"f{i:03d}.bin", 4096 if i % 20 else 300 << 10)
    async with Client(daemon.endpoint) as client:
        await sent(client, tmp_path / "t")
        plan = plan_upload([tmp_path / "t"])
        changed = {"t/f007.bin", "t/f040.bin", "t/f120.bin", "t/f139.bin"}
        for path, name, size in plan.files:
            if name in changed:  # new bytes, same size and mtime: only -c sees it
                make_file(Path(path), size)
        gone = "t/f100.bin"
        os.unlink(next(path for path, name, _ in plan.files if name == gone))  # cannot be read: not unchanged
        got = await unchanged_uploads(client, plan.files, Compare.CHECKSUM, plan.mtime_ns)
        names = [n for _, n, _ in plan.files]
        assert {n for n, (same, _) in zip(names, got, strict=True) if not same} == changed | {gone}
        assert all(d == digest_of(p) for (p, _, _), (same, d) in zip(plan.files, got, strict=True) if same)
        quick = await unchanged_uploads(client, plan.files, Compare.QUICK, plan.mtime_ns)
        assert all(same for same, _ in quick)  # the walk's size and mtime: the bytes are not read


async def test_checksum_needs_the_same_size_as_well_as_the_digest(daemon, tmp_path):
    path = make_file(tmp_path / "x.bin", 10, seed=b"a")
    async with Client(daemon.endpoint) as client:
        await sent(client, path)
        assert await unchanged_uploads(client, [(path, "x.bin", 10)], Compare.CHECKSUM) == [(True, digest_of(path))]
        make_file(path, 11, seed=b"a")
        assert await unchanged_uploads(client, [(path, "x.bin", 11)], Compare.CHECKSUM) == [(False, None)]


async def test_a_check_larger_than_one_request_is_split_and_answered_in_order(daemon, tmp_path, monkeypatch):
    held = [make_file(tmp_path / "t" / f"f{i}.bin", 5 + i) for i in range(3)]
    async with Client(daemon.endpoint) as client:
        await sent(client, tmp_path / "t")
        names = [f"t/none{i}" for i in range(MAX_CHECK_FILES + 1)]
        names[0], names[5000], names[-1] = "t/f0.bin", "t/f1.bin", "t/f2.bin"
        sizes = [5] * len(names)
        sizes[5000], sizes[-1] = 6, 7
        mtimes = [MTIME_NS] * len(names)
        mtimes[-1] = MTIME_NS + 1
        got = await client.check(names, sizes, mtimes)
        expected = [(CHECK_ABSENT, None)] * len(names)
        expected[0], expected[5000] = (CHECK_SAME, digest_of(held[0])), (CHECK_SAME, digest_of(held[1]))
        expected[-1] = (CHECK_DIFFERS, None)
        assert got == expected
        # A byte budget of names splits as the count does.
        monkeypatch.setattr(ops, "_CHECK_NAME_BYTES", 40)
        assert await client.check(["t/f0.bin", "x" * 30, "t/f1.bin", "t/f2.bin"], [5, 1, 6, 7]) == [
            (CHECK_SAME, digest_of(held[0])),
            (CHECK_ABSENT, None),
            (CHECK_SAME, digest_of(held[1])),
            (CHECK_SAME, digest_of(held[2])),
        ]
        assert await client.check([], []) == []
