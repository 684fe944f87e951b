"""The protocol's mtime range: nanoseconds since the epoch in 64 signed bits."""

from __future__ import annotations

from zfile.protocol.limits import MTIME_MAX_NS, MTIME_MIN_NS, mtime_outside


def test_an_mtime_in_range_has_nothing_to_say() -> None:
    for ns in (MTIME_MIN_NS, -1, 0, 1_796_598_886_978_471_970, MTIME_MAX_NS):
        assert mtime_outside(ns) is None


def test_an_mtime_past_2262_or_before_1677_says_when_and_the_bound() -> None:
    assert mtime_outside(15_032_385_535 * 10**9) == (
        "its mtime, 2446-05-10T22:38:55Z, is after 2262-04-11T23:47:16Z, "
        "the latest zfile keeps (nanoseconds in 64 bits)"
    )
    assert mtime_outside(MTIME_MAX_NS + 1).startswith("its mtime, 2262-04-11T23:47:16Z, is after")
    assert mtime_outside(MTIME_MIN_NS - 1).startswith("its mtime, 1677-09-21T00:12:43Z, is before 1677-09-21")
