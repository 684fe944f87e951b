"""The daemon's answer to a CHECK as a pure function of what its store
holds: a verdict per name, and a digest per file found the same."""

from __future__ import annotations

from zfile.protocol.events import CHECK_ABSENT, CHECK_DIFFERS, CHECK_SAME, Check, CheckOk
from zfile.protocol.quickcheck import answer_check

D1, D2 = b"\x01" * 32, b"\x02" * 32
HELD = {
    "a": (10, 100, "blake3", D1),
    "b": (20, 200, "blake3", D2),
    "c": (30, 300, "xxh3", D1),
}


def test_size_and_mtime_decide_and_each_same_file_brings_its_digest():
    check = Check(7, "blake3", ("a", "b", "b", "c", "zz"), (10, 20, 21, 30, 1), (100, 201, 200, 300, 1))
    assert answer_check(check, HELD) == CheckOk(
        7, bytes([CHECK_SAME, CHECK_DIFFERS, CHECK_ABSENT, CHECK_SAME, CHECK_ABSENT]), (D1, b"")
    )


def test_without_mtimes_the_size_alone_decides():
    check = Check(1, "blake3", ("a", "b", "c"), (10, 20, 31))
    assert answer_check(check, HELD) == CheckOk(1, bytes([CHECK_SAME, CHECK_SAME, CHECK_ABSENT]), (D1, D2))


def test_a_digest_of_another_algorithm_is_not_passed_off_as_the_asked_one():
    assert answer_check(Check(1, "xxh3", ("a", "c"), (10, 30)), HELD).digests == (b"", D1)
