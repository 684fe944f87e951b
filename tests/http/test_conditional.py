"""Validators, conditional requests and ranges (RFC 9110 §13, §14), without I/O."""

from __future__ import annotations

import pytest

from zfile.http.conditional import (
    Span,
    Unsatisfiable,
    byte_range,
    etag,
    http_date,
    parse_http_date,
    precondition,
)
from zfile.protocol.events import Entry

MTIME = 1_700_000_000
ENTRY = Entry("d/a.bin", 1000, MTIME * 10**9 + 123, 0o644, "blake3", bytes(range(32)), 1.0)
TAG = '"' + bytes(range(32)).hex() + '"'
DATE = http_date(MTIME)


def test_validators():
    assert etag(ENTRY) == TAG
    assert DATE == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert parse_http_date(DATE) == MTIME
    assert parse_http_date("Tuesday, 14-Nov-23 22:13:20 GMT") == MTIME  # RFC 850 form
    assert parse_http_date("Tue Nov 14 22:13:20 2023") is None  # asctime carries no zone: ignored
    assert parse_http_date("yesterday") is None


@pytest.mark.parametrize(
    ("header", "span"),
    [
        ("bytes=0-0", Span(0, 1, 1000)),
        ("bytes=999-999", Span(999, 1000, 1000)),
        ("bytes=-1", Span(999, 1000, 1000)),
        ("bytes=100-199", Span(100, 200, 1000)),
        ("bytes=500-", Span(500, 1000, 1000)),
        ("bytes=900-5000", Span(900, 1000, 1000)),  # a last byte past the end is cut to it
        ("bytes=-5000", Span(0, 1000, 1000)),  # a suffix longer than the file: all of it
        ("BYTES = 1-2", Span(1, 3, 1000)),
    ],
)
def test_single_ranges(header, span):
    got = byte_range({"Range": header}, ENTRY)
    assert got == span
    assert got.content_range() == f"bytes {span.start}-{span.end - 1}/1000"


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_ranges_past_the_end_are_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        byte_range({"Range": header}, ENTRY)


@pytest.mark.parametrize(
    "header",
    ["items=0-1", "bytes=0-1,5-6", "bytes=5-1", "bytes=a-b", "bytes=-", "bytes=1", "bytes=\u00b2-3", "bytes=0x1-2"],
)
def test_other_ranges_are_ignored(header):
    assert byte_range({"Range": header}, ENTRY) is None


def test_if_range():
    ask = {"Range": "bytes=0-9"}
    assert byte_range(ask | {"If-Range": TAG}, ENTRY) == Span(0, 10, 1000)
    assert byte_range(ask | {"If-Range": '"other"'}, ENTRY) is None
    assert byte_range(ask | {"If-Range": "W/" + TAG}, ENTRY) is None  # If-Range compares strongly
    assert byte_range(ask | {"If-Range": DATE}, ENTRY) == Span(0, 10, 1000)
    assert byte_range(ask | {"If-Range": http_date(MTIME - 1)}, ENTRY) is None


def test_if_none_match_and_if_modified_since():
    assert precondition("GET", {"If-None-Match": TAG}, ENTRY) == 304
    assert precondition("HEAD", {"If-None-Match": f'"x", W/{TAG}'}, ENTRY) == 304  # weak comparison
    assert precondition("GET", {"If-None-Match": "*"}, ENTRY) == 304
    assert precondition("PUT", {"If-None-Match": "*"}, ENTRY) == 412
    assert precondition("GET", {"If-None-Match": '"x"'}, ENTRY) is None
    assert precondition("GET", {"If-Modified-Since": DATE}, ENTRY) == 304
    assert precondition("GET", {"If-Modified-Since": http_date(MTIME - 1)}, ENTRY) is None
    # If-None-Match wins over If-Modified-Since (§13.2.2, step 4 only without it).
    assert precondition("GET", {"If-None-Match": '"x"', "If-Modified-Since": DATE}, ENTRY) is None
    assert precondition("GET", {"If-Modified-Since": "garbage"}, ENTRY) is None


def test_if_match_and_if_unmodified_since():
    assert precondition("GET", {"If-Match": TAG}, ENTRY) is None
    assert precondition("GET", {"If-Match": "*"}, ENTRY) is None
    assert precondition("GET", {"If-Match": '"x"'}, ENTRY) == 412
    assert precondition("GET", {"If-Match": "W/" + TAG}, ENTRY) == 412
    assert precondition("GET", {"If-Unmodified-Since": http_date(MTIME - 1)}, ENTRY) == 412
    assert precondition("GET", {"If-Unmodified-Since": DATE}, ENTRY) is None
