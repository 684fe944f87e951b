"""Process-wide set-up of the daemon: its open-file limit.

Each transfer holds descriptors (its connection, its partial, an unnamed
file until its link), and the soft ``RLIMIT_NOFILE`` most processes start
with (1024, systemd's default for services) is well under what the kernel
allows them (the hard limit: 524288 under systemd).  As Go's runtime does
for every program since 1.19, the daemon raises its soft limit to the hard
one before anything sizes a budget from it (:mod:`zfile.store.unnamed`);
an operator who wants a lower one sets the hard limit (``LimitNOFILE=`` in
the unit, ``ulimit -Hn``).  getrlimit(2), setrlimit(2).
"""

from __future__ import annotations

import resource

#: Never ask for more than this many, whatever the hard limit says (an
#: "unlimited" hard limit is refused by setrlimit for RLIMIT_NOFILE anyway).
_MOST = 1 << 20


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the soft open-file limit to the hard one (at most 2^20); the
    ``(old, new)`` soft limits when it was raised, None when it already was
    as high or cannot be changed (the error is not this process's to fix)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    want = _MOST if hard == resource.RLIM_INFINITY else min(hard, _MOST)
    if soft >= want:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (OSError, ValueError):
        return None
    return soft, want


__all__ = ["raise_open_file_limit"]
