"""Tests of zfile.client.plan's walk: the local paths and stored names it plans."""

from __future__ import annotations

import os
from pathlib import Path

from zfile.client.plan import listed_paths, plan_upload, shown

from ..conftest import make_late


def tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a")
    (root / "sub" / "b.txt").write_bytes(b"bb")


def test_the_walk_gives_each_file_its_path_name_size_and_mtime(tmp_path):
    tree(tmp_path / "t")
    plan = plan_upload([tmp_path / "t"])
    assert plan.files == [
        (str(tmp_path / "t" / "a.txt"), "t/a.txt", 1),
        (str(tmp_path / "t" / "sub" / "b.txt"), "t/sub/b.txt", 2),
    ]
    assert plan.mtime_ns == {name: os.stat(path).st_mtime_ns for path, name, _ in plan.files}


def test_the_current_directory_walked_names_its_files_without_a_dot(tmp_path, monkeypatch):
    tree(tmp_path / "t")
    monkeypatch.chdir(tmp_path / "t")
    for spelled in (".", "./"):
        plan = plan_upload([spelled])
        assert [(path, name) for path, name, _ in plan.files] == [
            ("a.txt", "t/a.txt"),
            (os.path.join("sub", "b.txt"), "t/sub/b.txt"),
        ]


def test_a_file_whose_mtime_no_message_can_carry_is_skipped_saying_so(tmp_path):
    tree(tmp_path / "t")
    late = tmp_path / "t" / "sub" / "late.txt"
    late.write_bytes(b"from the future")
    make_late(late)
    for paths, sent in (([tmp_path / "t"], ["t/a.txt", "t/sub/b.txt"]), ([late], [])):
        plan = plan_upload(paths)
        assert [name for _, name, _ in plan.files] == sent
        [skipped] = plan.skipped
        assert skipped.name == str(late) and "after 2262-04-11" in str(skipped.error), skipped
        assert "touch(1)" in str(skipped.error)


def test_a_link_that_leads_back_to_itself_is_a_loop_not_dangling(tmp_path):
    tree(tmp_path / "t")
    (tmp_path / "t" / "ping").symlink_to("pong")
    (tmp_path / "t" / "pong").symlink_to("ping")
    (tmp_path / "t" / "gone").symlink_to("nowhere")
    for copy_links in (False, True):
        plan = plan_upload([tmp_path / "t"], copy_links=copy_links)
        why = {Path(o.name).name: str(o.error) for o in plan.skipped}
        assert why == {
            "ping": "symbolic link loop (it leads back to itself)",
            "pong": "symbolic link loop (it leads back to itself)",
            "gone": "dangling symbolic link",
        }
        assert [name for _, name, _ in plan.files] == ["t/a.txt", "t/sub/b.txt"]
        assert not plan.unread  # neither is a read error that would stop a --delete


def test_a_shown_name_escapes_what_cannot_print_and_no_two_names_show_alike():
    assert shown("plain/name é.txt") == "plain/name é.txt"
    assert shown("a\nb") == "a\\nb"  # a, a newline, b
    assert shown("a\\nb") == "a\\\\nb"  # a, a backslash, n, b: not the same line
    assert shown(os.fsdecode(b"bad\xff.bin")) == "bad\\xff.bin"  # a byte that is not UTF-8
    assert shown("lit\\xff.bin") == "lit\\\\xff.bin"  # the four characters \xff
    assert shown(Path("bell\x07")) == "bell\\x07"
    names = ["a\nb", "a\\nb", os.fsdecode(b"\xff"), "\\xff", "\x1b", "\\x1b"]
    assert len({shown(n) for n in names}) == len(names)
    assert all(shown(n).isprintable() for n in names)


def test_a_files_from_list_reads_as_rsync_reads_one():
    text = b"# a comment\na.txt\n\n/abs/b.txt\n; another\n sp ace.txt\r\n  \nbad\xff\n"
    # Blank (or all-space) lines and comments out; a leading / dropped; spaces in a name kept; CRLF ends a line.
    assert listed_paths(text) == ["a.txt", "abs/b.txt", " sp ace.txt", os.fsdecode(b"bad\xff")]
    # NUL-ended: every byte but NUL is the name's, comments and newlines included.
    assert listed_paths(b"#not a comment\0a\nb\0/\0", nul=True) == ["#not a comment", "a\nb", "."]


def test_files_from_names_each_path_relative_to_its_directory(tmp_path):
    tree(tmp_path / "t")
    base = tmp_path / "t"
    plan = plan_upload([base / "sub", base / "a.txt", base / "."], base=base)
    assert sorted(name for _, name, _ in plan.files) == ["a.txt", "sub/b.txt"]  # "." sends the base, once
