"""The LIST prefixes that cover a set of stored names
(``listing_prefixes``): a store that reads its catalog by listing answers a
CHECK from them, and a fan-out's quick check lists them, so every name must
fall under one, or an unchanged file would be sent again."""

from __future__ import annotations

import pytest

from zfile.protocol.names import BARE_NAMES_MAX, listing_prefixes


def covered(name: str, prefixes: list[str]) -> bool:
    return any(name == p or (p.endswith("/") and name.startswith(p)) or p == "" for p in prefixes)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["data/a.bin", "data/sub/b.bin"], ["data/"]),
        (["data/a.bin", "one.bin"], ["data/", "one.bin"]),
        (["sub/b.bin", "other/c.bin", "other/d/e"], ["other/", "sub/"]),
        (["datasets/data/a.bin", "datasets/one.bin"], ["datasets/"]),
        (["data/"], ["data/"]),
        (["", "a"], [""]),
        ([], []),
    ],
)
def test_the_prefixes_cover_every_name_once(names, expected):
    prefixes = listing_prefixes(names)
    assert prefixes == expected
    assert [n for n in names if n and not covered(n, prefixes)] == []


def test_many_names_on_their_own_list_the_whole_store():
    bare = [f"f{i:03d}.bin" for i in range(BARE_NAMES_MAX + 1)]
    assert listing_prefixes(bare) == [""]
    assert listing_prefixes(bare[:BARE_NAMES_MAX]) == sorted(bare[:BARE_NAMES_MAX])
