"""The daemon's answer to a CHECK (docs/protocol.md, "CHECK"), as a pure
function of what its store holds: rsync's quick check, size and mtime in
nanoseconds, made where the catalog is."""

from __future__ import annotations

from collections.abc import Mapping

from zfile.protocol.events import CHECK_DIFFERS, CHECK_SAME, Check, CheckOk

#: What a CHECK compares of a stored file: (size in bytes, mtime in
#: nanoseconds since the epoch, digest algorithm, whole-file digest).
Held = tuple[int, int, str, bytes]


def answer_check(check: Check, held: Mapping[str, Held]) -> CheckOk:
    """The CHECK-OK for ``check`` from ``held`` (what the store holds of
    the check's names, by name; names it does not hold left out): a verdict
    per name and the stored digest of each file found the same (``b""``
    when it is stored under another algorithm than the check's)."""
    same = bytearray(len(check.names))
    digests: list[bytes] = []
    mtimes = check.mtimes_ns
    algo = check.algo
    for i, (name, size) in enumerate(zip(check.names, check.sizes, strict=True)):
        found = held.get(name)
        if found is None or found[0] != size:
            continue
        if mtimes is not None and found[1] != mtimes[i]:
            same[i] = CHECK_DIFFERS
            continue
        same[i] = CHECK_SAME
        digests.append(found[3] if found[2] == algo else b"")
    return CheckOk(check.id, bytes(same), tuple(digests))


__all__ = ["Held", "answer_check"]
