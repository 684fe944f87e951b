"""Tests of zfile.store's factory: the backend a location gets."""

from __future__ import annotations

from pathlib import Path

from zfile.store import LocalStore, make_store


async def test_a_directory_gets_the_local_backend(tmp_path: Path) -> None:
    store = make_store(tmp_path / "root", max_file_size=10, max_name_bytes=20, partial_ttl=5.0)
    assert isinstance(store, LocalStore)
    assert store.location == str(tmp_path / "root")
    assert (store.max_file_size, store.max_name_bytes, store.partial_ttl) == (10, 20, 5.0)
    await store.open()
    try:
        assert await store.list() == []
    finally:
        await store.close()
