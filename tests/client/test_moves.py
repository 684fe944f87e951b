"""zfile.move_tree: a stored tree renamed file by file, each refusal kept
with its file, and what it refuses before moving anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from zfile.client.client import Client
from zfile.client.moves import move_tree
from zfile.errors import ErrorCode, RemoteError


async def test_move_tree_renames_each_file_and_keeps_each_refusal(daemon, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"data")
    async with Client(daemon.endpoint) as client:
        for name in ("a/1", "a/2/3", "b/2/3", "ax/4"):
            await client.put(src, name)
        moved = await move_tree(client, "a/", "b/")
        assert [(m.name, m.entry.name if m.entry else None) for m in moved] == [("a/1", "b/1"), ("a/2/3", None)]
        assert moved[1].error is not None and moved[1].error.code is ErrorCode.EXISTS
        assert sorted([e.name async for e in client.list("")]) == ["a/2/3", "ax/4", "b/1", "b/2/3"]  # ax/ untouched
        for prefix, to in (("a", "b/"), ("a/", "b"), ("a/", "a/sub/")):
            with pytest.raises(ValueError):
                await move_tree(client, prefix, to)
        with pytest.raises(RemoteError) as info:
            await move_tree(client, "none/", "b/")
        assert info.value.code is ErrorCode.NOT_FOUND
