"""A LIST-PAGE's entries are checked inline for the common entry and by the
schema for any other: both must accept the same values, build the same
entries and refuse the same hostile ones, wherever in a page they are.
A page that fits without measuring each entry must still fit."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from zfile.errors import RemoteProtocolError
from zfile.protocol.codec import MAX_HEADER_BYTES, MAX_WIRE_NAME_BYTES, decode, encode, page_fit
from zfile.protocol.events import Entry, ListPage

ID = 3
D = bytes(range(32))
GOOD: dict[str, Any] = {
    "name": "tree/d00/f00000.bin",
    "size": 4096,
    "mtime_ns": 1_700_000_000_123_456_789,
    "mode": 0o644,
    "algo": "blake3",
    "digest": D,
    "received": 1_700_000_001.25,
    "id": "0123456789abcdef0123456789abcdef",
    "peer": "tcp://127.0.0.1:40000",
}


def page(entries: list[Any]) -> list[bytes]:
    return [msgpack.packb({"v": 4, "t": "LIST-PAGE", "id": ID, "entries": entries, "more": False}, use_bin_type=True)]


def expected(raw: dict[str, Any]) -> Entry:
    return Entry(**{**raw, "received": float(raw["received"])})


# Entries at the edges of what the schema accepts; each either takes the
# inline check or falls back to the schema, and must decode the same.
ACCEPTED = [
    GOOD,
    {k: v for k, v in GOOD.items() if k not in ("id", "peer")},
    {**GOOD, "id": None, "peer": None},
    {**GOOD, "received": 7},  # an integer number of seconds
    {**GOOD, "name": "n" * MAX_WIRE_NAME_BYTES},  # ASCII at the byte limit
    {**GOOD, "name": "\U0001f600" * (MAX_WIRE_NAME_BYTES // 4)},  # 4-byte characters at the limit
    {**GOOD, "name": "é" * (MAX_WIRE_NAME_BYTES // 2)},  # 2-byte characters at the limit
    {**GOOD, "algo": "é" * 32, "id": "x" * 64, "peer": "ü" * 2048},
    {**GOOD, "size": (1 << 63) - 1, "mtime_ns": -(1 << 63), "mode": 0o7777, "digest": b"\x00" * 64},
    {**GOOD, "size": 0, "mode": 0, "digest": b"\x01"},
    {**GOOD, "owner": "root"},  # unknown fields are ignored
]


@pytest.mark.parametrize("raw", ACCEPTED, ids=range(len(ACCEPTED)))
def test_an_entry_the_schema_accepts_decodes_to_the_same_entry(raw):
    want = expected({"id": "", "peer": "", **{k: v for k, v in raw.items() if v is not None and k != "owner"}})
    got = decode(page([GOOD, raw, GOOD])).entries
    assert got == (expected(GOOD), want, expected(GOOD))
    assert type(got[1].received) is float


# (field, hostile value, words the refusal must hold)
REFUSED = [
    ("name", "n" * (MAX_WIRE_NAME_BYTES + 1), "at most 65536 bytes"),
    ("name", "é" * (MAX_WIRE_NAME_BYTES // 2 + 1), "at most 65536 bytes"),
    ("name", "\U0001f600" * (MAX_WIRE_NAME_BYTES // 4 + 1), "at most 65536 bytes"),
    ("name", b"tree/a", "must be a string, not bytes"),
    ("size", True, "must be an integer, not bool"),
    ("size", -1, "between 0"),
    ("size", 1 << 63, "between 0"),
    ("size", 4096.0, "must be an integer, not float"),
    ("mtime_ns", 1 << 63, "between"),
    ("mode", 0o10000, "between 0 and 4095"),
    ("mode", False, "must be an integer, not bool"),
    ("algo", "é" * 33, "at most 64 bytes"),
    ("algo", "x" * 65, "at most 64 bytes"),
    ("digest", b"", "1 to 64 bytes"),
    ("digest", b"\x00" * 65, "1 to 64 bytes"),
    ("digest", D.hex(), "must be binary, not str"),
    ("received", True, "must be a number, not bool"),
    ("received", "1.5", "must be a number, not str"),
    ("id", "x" * 65, "at most 64 bytes"),
    ("peer", "x" * 4097, "at most 4096 bytes"),
    ("peer", 5, "must be a string, not int"),
]


@pytest.mark.parametrize(("key", "value", "words"), REFUSED, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(REFUSED)])
def test_a_hostile_entry_among_good_ones_is_refused_by_name(key, value, words):
    entries = [GOOD] * 500 + [{**GOOD, key: value}] + [GOOD] * 10
    with pytest.raises(RemoteProtocolError) as info:
        decode(page(entries))
    assert "LIST-PAGE field 'entries'" in str(info.value)
    assert f"entry field {key!r}" in str(info.value) and words in str(info.value)
    assert info.value.transfer_id == ID


@pytest.mark.parametrize("missing", ["name", "size", "mtime_ns", "mode", "algo", "digest", "received"])
def test_an_entry_lacking_a_required_field_is_refused(missing):
    entries = [GOOD, {k: v for k, v in GOOD.items() if k != missing}]
    with pytest.raises(RemoteProtocolError, match=f"entry lacks field '{missing}'"):
        decode(page(entries))


@pytest.mark.parametrize("item", [[], "entry", 7, None])
def test_an_entry_that_is_not_a_map_is_refused(item):
    with pytest.raises(RemoteProtocolError, match="entry must be a map"):
        decode(page([GOOD, item]))


def test_a_page_of_many_entries_round_trips():
    entries = tuple(expected({**GOOD, "name": f"tree/d{i % 20:02d}/f{i:05d}.bin", "size": i}) for i in range(1000))
    assert page_fit(entries) == len(entries)
    assert decode(encode(ListPage(ID, entries, False))).entries == entries


def test_a_page_of_wide_characters_that_fits_unmeasured_is_within_the_limit():
    # 4-byte characters: a page the bound lets through whole, without
    # packing each entry (128 bytes an entry for what is not a string or the
    # digest), must be within the receiver's limit.
    name_chars = 1004
    bound = 4 * (name_chars + len("blake3")) + len(D) + 128
    entries = tuple(
        expected({**GOOD, "name": f"{k:04d}" + "\U0001f600" * (name_chars - 4), "id": "", "peer": ""})
        for k in range((MAX_HEADER_BYTES - 1024) // bound)
    )
    assert page_fit(entries) == len(entries)
    assert len(encode(ListPage(ID, entries, False))[0]) <= MAX_HEADER_BYTES
    more = (*entries, *entries[:60])
    count = page_fit(more)
    assert count < len(more)
    assert len(encode(ListPage(ID, more[:count], True))[0]) <= MAX_HEADER_BYTES
