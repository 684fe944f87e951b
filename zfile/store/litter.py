"""Bounds on the partials interrupted uploads leave behind.

A partial is kept so that its upload can resume, and swept after
``partial_ttl`` unused; but a client that starts uploads and cancels them
leaves one partial each time, and the sweep comes a day later.  So the
partials on disk are also held to a count and a number of bytes, in all and
per peer (the ``peer`` an upload records: its CURVE key, else its address);
past a bound the oldest partials (least recently touched) that no live
upload holds are reclaimed first, so the newest, the likeliest to resume,
stay.

:class:`PartialBounds` is the bookkeeping only, synchronous and without I/O;
:class:`zfile.store.local.LocalStore` tells it what appears and goes and
deletes what :meth:`PartialBounds.over` picks.  Sizes are bytes, times
seconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Most partials kept, and most bytes they hold, in all and per peer."""

    count: int = 1024
    bytes: int = 1 << 40
    count_per_peer: int = 128
    bytes_per_peer: int = 256 << 30


@dataclass(slots=True)
class _Partial:
    peer: str
    size: int
    touched: float
    name: str


class PartialBounds:
    """The partials on disk (transfer id -> peer, bytes, last touched, and
    the name its file is to have)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._held: dict[str, _Partial] = {}
        self._of_name: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, transfer: str) -> bool:
        return transfer in self._held

    @property
    def bytes(self) -> int:
        """Bytes all the partials hold."""
        return sum(p.size for p in self._held.values())

    def note(self, transfer: str, peer: str, size: int, touched: float, name: str = "") -> None:
        """Record that ``transfer``'s partial exists, holds ``size`` bytes,
        was last touched at ``touched`` and is of the file ``name`` ("" when
        unknown)."""
        old = self._held.get(transfer)
        if old is not None and old.name != name:
            self._unindex(transfer, old.name)
        self._held[transfer] = _Partial(peer, size, touched, name)
        if name:
            self._of_name.setdefault(name, set()).add(transfer)

    def forget(self, transfer: str) -> None:
        """Record that ``transfer``'s partial is gone; a no-op if unknown."""
        old = self._held.pop(transfer, None)
        if old is not None:
            self._unindex(transfer, old.name)

    def _unindex(self, transfer: str, name: str) -> None:
        others = self._of_name.get(name)
        if others is not None:
            others.discard(transfer)
            if not others:
                del self._of_name[name]

    def of_name(self, name: str) -> list[str]:
        """The transfers whose partials are of the file ``name``."""
        return list(self._of_name.get(name, ()))

    def over(self, live: Callable[[str], bool]) -> list[str]:
        """The partials to reclaim, oldest first, so that the rest are within
        every bound; a partial for which ``live(transfer)`` is true (a live
        upload holds it) is counted but never chosen."""
        lim = self.limits
        count, total = len(self._held), sum(p.size for p in self._held.values())
        per_count: dict[str, int] = {}
        per_bytes: dict[str, int] = {}
        for p in self._held.values():
            per_count[p.peer] = per_count.get(p.peer, 0) + 1
            per_bytes[p.peer] = per_bytes.get(p.peer, 0) + p.size
        if (
            count <= lim.count
            and total <= lim.bytes
            and all(
                per_count[peer] <= lim.count_per_peer and per_bytes[peer] <= lim.bytes_per_peer for peer in per_count
            )
        ):
            return []
        chosen = []
        for transfer, p in sorted(self._held.items(), key=lambda item: item[1].touched):
            overall = count > lim.count or total > lim.bytes
            mine = per_count[p.peer] > lim.count_per_peer or per_bytes[p.peer] > lim.bytes_per_peer
            if not (overall or mine) or live(transfer):
                continue
            chosen.append(transfer)
            count -= 1
            total -= p.size
            per_count[p.peer] -= 1
            per_bytes[p.peer] -= p.size
        return chosen


__all__ = ["Limits", "PartialBounds"]
