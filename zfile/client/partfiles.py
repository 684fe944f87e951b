"""A download's temp file and its state file, beside the destination.

A download to ``DIR/NAME`` is written to ``DIR/.NAME.zfile-part`` and
renamed over ``NAME`` once verified (an atomic rename, rename(2)); beside
it ``DIR/.NAME.zfile-part.json`` records which stored file, of what size
(bytes) and whole-file digest, the temp file holds the start of, so that a
``get`` run again resumes at the temp file's end only when the daemon still
holds that same file (docs/protocol.md, "Resume").
"""

from __future__ import annotations

import json
from pathlib import Path

PART_SUFFIX = ".zfile-part"


def part_paths(dest: Path) -> tuple[Path, Path]:
    """The temp file and its state file for a download to ``dest``."""
    part = dest.with_name(f".{dest.name}{PART_SUFFIX}")
    return part, part.with_name(part.name + ".json")


def is_part_name(basename: str) -> bool:
    """True for a name :func:`part_paths` makes: a download's temp file or its
    state file, which are kept for resume and are never a user's file."""
    return basename.startswith(".") and basename.endswith((PART_SUFFIX, PART_SUFFIX + ".json"))


def write_state(state: Path, name: str, size: int, digest: bytes) -> None:
    """Record at ``state`` that its temp file holds the start of the stored
    file ``name`` of ``size`` bytes and ``digest``; OSError."""
    state.write_text(json.dumps({"name": name, "size": size, "digest": digest.hex()}))


def resume_point(part: Path, state: Path, name: str) -> tuple[int, bytes | None]:
    """Where a download of ``name`` into ``part`` resumes: the temp file's
    size in bytes and the digest its state file records, or ``(0, None)``
    (start afresh) when either is missing or unreadable, the state names
    another file, or the temp file is longer than that file."""
    try:
        info = json.loads(state.read_text())
        size = part.stat().st_size
    except (OSError, ValueError):
        return 0, None
    if not isinstance(info, dict) or info.get("name") != name or size > info.get("size", -1):
        return 0, None
    try:
        return size, bytes.fromhex(info["digest"])
    except (KeyError, TypeError, ValueError):
        return 0, None


__all__ = ["PART_SUFFIX", "is_part_name", "part_paths", "resume_point", "write_state"]
