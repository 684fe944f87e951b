"""What a send lists on the daemon before its walk is done: the stored names
of the paths named (``root_names``) turned into LIST prefixes
(``listing_prefixes``) must cover every name the walk then plans, or the
quick check would send unchanged files again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zfile.client.plan import plan_upload, root_names
from zfile.client.quickcheck import listing_prefixes
from zfile.errors import BadName, LocalFileError

from ..rawpeer import make_file


def covered(name: str, prefixes: list[str]) -> bool:
    return any(name == p or (p.endswith("/") and name.startswith(p)) or p == "" for p in prefixes)


def tree(root: Path) -> None:
    make_file(root / "data" / "a.bin", 10)
    make_file(root / "data" / "sub" / "b.bin", 20)
    make_file(root / "other" / "c.bin", 30)
    make_file(root / "one.bin", 40)


@pytest.mark.parametrize(
    ("paths", "relative", "prefix", "expected"),
    [
        (["data"], False, "", ["data/"]),
        (["data", "one.bin"], False, "", ["data/", "one.bin"]),
        (["data/sub", "other"], False, "", ["other/", "sub/"]),
        (["data/sub"], True, "", ["data/"]),
        (["data", "one.bin"], False, "datasets/", ["datasets/"]),
        (["."], True, "", [""]),
        (["data/."], False, "", ["data/"]),
    ],
)
def test_the_prefixes_cover_every_planned_name(tmp_path, monkeypatch, paths, relative, prefix, expected):
    tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    prefixes = listing_prefixes(root_names(paths, relative=relative, prefix=prefix))
    assert prefixes == expected
    plan = plan_upload(paths, relative=relative, prefix=prefix)
    assert plan.files
    assert [name for _, name, _ in plan.files if not covered(name, prefixes)] == []


def test_many_files_named_on_their_own_list_the_whole_store(tmp_path):
    paths = [make_file(tmp_path / f"f{i:03d}.bin", 1) for i in range(65)]
    assert listing_prefixes(root_names(paths)) == [""]
    assert listing_prefixes(root_names(paths[:64])) == sorted(p.name for p in paths[:64])


def test_a_dangling_link_is_left_out_as_the_plan_skips_it(tmp_path):
    make_file(tmp_path / "a.bin", 1)
    os.symlink(tmp_path / "gone", tmp_path / "link")
    assert root_names([tmp_path / "a.bin", tmp_path / "link"]) == ["a.bin"]


def test_a_missing_path_or_bad_prefix_raises_as_the_plan_does(tmp_path):
    with pytest.raises(LocalFileError, match="no such file"):
        root_names([tmp_path / "nothing"])
    with pytest.raises(BadName, match="--prefix"):
        root_names([tmp_path], prefix="../up/")
