"""Tests of zfile.store.reader: a stored file read whole or streamed in chunks,
its failures coming out as zfile errors."""

from __future__ import annotations

import errno
import os

import pytest

from zfile.errors import ErrorCode, StoreError
from zfile.fileio.chunks import READ_AHEAD
from zfile.store import LocalStore

from .test_local import upload

CHUNK = 4096


async def test_streamed_chunks_are_the_file(store: LocalStore) -> None:
    data = os.urandom(2 * CHUNK + 5)
    await upload(store, "f", data)
    dl = await store.open_download("f")
    reader = dl.reader(CHUNK, CHUNK)
    got = b""
    try:
        while not reader.done:
            buf, view = await reader.next()
            got += bytes(view)
            reader.pool.give(buf)
    finally:
        await reader.aclose()
        await dl.close()
    assert got == data[CHUNK:]


async def test_a_file_cut_short_while_streamed_is_a_store_error(store: LocalStore) -> None:
    # Longer than the chunks a reader reads ahead: those were read before the cut, whole.
    data = os.urandom((3 + READ_AHEAD) * CHUNK)
    await upload(store, "f", data)
    dl = await store.open_download("f")
    reader = dl.reader(0, CHUNK)
    try:
        buf, view = await reader.next()
        assert bytes(view) == data[:CHUNK]
        reader.pool.give(buf)
        os.truncate(store.root / "f", CHUNK + 10)
        handed = CHUNK
        with pytest.raises(StoreError, match="'f' changed on disk while being sent") as info:
            while not reader.done:
                buf, view = await reader.next()
                assert bytes(view) == data[handed : handed + len(view)]  # never a mix of the two
                handed += len(view)
                reader.pool.give(buf)
        assert type(info.value) is StoreError
        assert handed <= (1 + READ_AHEAD) * CHUNK
    finally:
        await reader.aclose()
        await dl.close()


async def test_a_failed_read_while_streamed_is_a_store_error(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await upload(store, "f", os.urandom(CHUNK))
    dl = await store.open_download("f")
    reader = dl.reader(0, CHUNK)

    def broken(*args: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "preadv", broken)
    try:
        with pytest.raises(StoreError, match="could not read 'f': Input/output error") as info:
            await reader.next()
        assert type(info.value) is StoreError and info.value.code is ErrorCode.INTERNAL
    finally:
        monkeypatch.undo()
        await reader.aclose()
        await dl.close()
