"""A download's temp file and state file: their names, and where a resume starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from zfile.client.partfiles import is_part_name, part_paths, resume_point, write_state

DIGEST = bytes(range(32))


def test_the_temp_file_and_its_state_sit_beside_the_destination(tmp_path: Path) -> None:
    part, state = part_paths(tmp_path / "big.bin")
    assert (part, state) == (tmp_path / ".big.bin.zfile-part", tmp_path / ".big.bin.zfile-part.json")
    assert is_part_name(part.name) and is_part_name(state.name)
    assert not any(map(is_part_name, ["big.bin", "big.bin.zfile-part", ".big.bin", ".x.zfile-part.txt"]))


def test_a_resume_starts_at_the_temp_files_end_for_the_same_file(tmp_path: Path) -> None:
    part, state = part_paths(tmp_path / "big.bin")
    part.write_bytes(b"x" * 10)
    write_state(state, "data/big.bin", 100, DIGEST)
    assert resume_point(part, state, "data/big.bin") == (10, DIGEST)


@pytest.mark.parametrize(
    "state_text, part_bytes",
    [
        (None, 10),  # no state file
        ('{"name": "data/big.bin", "size": 100, "digest": "00"}', None),  # no temp file
        ("not json", 10),
        ("[1, 2]", 10),
        ('{"name": "other.bin", "size": 100, "digest": "00"}', 10),  # another file's
        ('{"name": "data/big.bin", "size": 5, "digest": "00"}', 10),  # longer than the file
        ('{"name": "data/big.bin", "size": 100, "digest": "zz"}', 10),
        ('{"name": "data/big.bin", "size": 100}', 10),
    ],
)
def test_anything_else_starts_afresh(tmp_path: Path, state_text: str | None, part_bytes: int | None) -> None:
    part, state = part_paths(tmp_path / "big.bin")
    if state_text is not None:
        state.write_text(state_text)
    if part_bytes is not None:
        part.write_bytes(b"x" * part_bytes)
    assert resume_point(part, state, "data/big.bin") == (0, None)
