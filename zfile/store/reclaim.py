"""The local store's partials on disk: interrupted uploads' ``.part`` and
``.json`` files under ``<root>/.zfile/tmp``, kept so that the uploads can
resume.

:class:`PartialKeeper` deletes them when they expire (the sweep, after
``partial_ttl`` seconds untouched) and as soon as they exceed their bounds
(reclaiming the oldest first, :class:`~zfile.store.litter.PartialBounds`),
and as soon as a file of the same name is stored anew: such a partial could
only resume the version of the file it was begun with, which is no longer
the one stored (rsync's ``--partial`` likewise keeps one partial per
destination file).  It finds them again when the store opens.  A partial a
live upload holds (:class:`~zfile.store.claims.Claims`) is never deleted,
and a deletion holds the partial's claim so that a ``begin_upload`` racing
it gets Busy.  Times are seconds since the epoch, sizes bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from zfile.errors import StoreError
from zfile.store.claims import Claims
from zfile.store.fs import unlink_all
from zfile.store.layout import Layout
from zfile.store.litter import PartialBounds

log = logging.getLogger("zfile.store")


class PartialKeeper:
    """The partials of ``layout``'s store, counted in ``bounds`` (module docstring)."""

    def __init__(self, layout: Layout, claims: Claims[Any], bounds: PartialBounds, ttl: float) -> None:
        self.layout = layout
        self.claims = claims
        self.bounds = bounds
        #: Seconds a partial stays untouched before the sweep deletes it.
        self.ttl = ttl
        self._reclaimer: asyncio.Task[None] | None = None
        self._again = False
        self._dropping: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """At the store's open, before any upload: sweep what expired, count
        what is left, and reclaim past the bounds.  StoreError when the
        partials' directory cannot be listed."""
        await self.sweep()
        for transfer, peer, size, touched, name in await asyncio.to_thread(scan, self.layout.tmp):
            self.bounds.note(transfer, peer, size, touched, name)
        await self._reclaim()

    async def settled(self) -> None:
        """Wait for a reclaim or a drop in progress (the store's close)."""
        if self._reclaimer is not None:
            await asyncio.gather(self._reclaimer, return_exceptions=True)
        if self._dropping:
            await asyncio.gather(*self._dropping, return_exceptions=True)

    def kept(self, transfer: str, peer: str, size: int, name: str) -> None:
        """An upload of ``name`` left its partial of ``size`` bytes: count it,
        and start reclaiming when that takes the partials past their bounds."""
        self.bounds.note(transfer, peer, size, time.time(), name)
        if self._reclaimer is not None and not self._reclaimer.done():
            self._again = True  # the running pass may have chosen before this partial came
        elif self.bounds.over(self.claims.__contains__):
            self._reclaimer = asyncio.get_running_loop().create_task(self._reclaim(), name="zfile-reclaim")

    def superseded(self, stored: list[tuple[str, str]]) -> None:
        """Each ``(name, transfer)`` of ``stored`` was just stored by that
        transfer: start deleting the other partials of the same names that
        no live upload holds.  Returns at once; :meth:`settled` waits."""
        doomed = [
            (other, name)
            for name, transfer in stored
            for other in self.bounds.of_name(name)
            if other != transfer and other not in self.claims
        ]
        if doomed:
            task = asyncio.get_running_loop().create_task(self._drop(doomed), name="zfile-drop")
            self._dropping.add(task)
            task.add_done_callback(self._dropping.discard)

    async def _drop(self, doomed: list[tuple[str, str]]) -> None:
        names = dict(doomed)
        dropped = await self._delete_unclaimed(list(names), "delete superseded")
        if dropped:
            log.info(
                "deleted %d partial upload(s) of files stored anew since (%r among them)",
                len(dropped),
                names[dropped[0]],
            )

    async def _delete_unclaimed(self, transfers: list[str], doing: str) -> list[str]:
        """Delete the partials of ``transfers`` that no live upload holds
        (one claimed since it was chosen stays) and return those deleted; one
        that cannot be deleted is logged, saying what the deletion was for
        (``doing``), and stays."""
        deleted = []
        for transfer in transfers:
            if transfer in self.claims:
                continue
            try:
                await self._delete(transfer)
            except OSError as exc:
                log.warning("could not %s partial upload %s: %s", doing, transfer, exc.strerror or exc)
                continue
            deleted.append(transfer)
        return deleted

    async def _reclaim(self) -> None:
        """Delete the oldest partials no live upload holds until the rest are within the bounds."""
        while True:
            self._again = False
            reclaimed = len(await self._delete_unclaimed(self.bounds.over(self.claims.__contains__), "reclaim"))
            if reclaimed:
                lim = self.bounds.limits
                log.info(
                    "reclaimed %d partial upload(s), oldest first, to keep them within %d in all, %d per peer "
                    "(%d and %d bytes)",
                    reclaimed,
                    lim.count,
                    lim.count_per_peer,
                    lim.bytes,
                    lim.bytes_per_peer,
                )
            if not self._again:
                return

    async def sweep(self, now: float | None = None) -> int:
        """Delete partials (``.part`` and ``.json``) whose state file was last
        touched more than :attr:`ttl` seconds before ``now`` (default the
        current time) and that no live upload holds.  Returns how many were
        deleted; StoreError when the partials' directory cannot be listed.
        A partial that cannot be deleted is left for the next sweep."""
        cutoff = (time.time() if now is None else now) - self.ttl
        tmp = self.layout.tmp
        try:
            transfers = await asyncio.to_thread(_touched_before, tmp, cutoff)
        except OSError as exc:
            raise StoreError(f"could not list partial uploads in {tmp}: {exc.strerror or exc}") from exc
        swept = 0
        for transfer in transfers:
            if transfer in self.claims:
                continue
            with contextlib.suppress(OSError):
                await self._delete(transfer)
                swept += 1
        return swept

    async def _delete(self, transfer: str) -> None:
        with self.claims.sweeping(transfer):  # a begin_upload racing the deletion gets Busy
            part, state = self.layout.part_path(transfer), self.layout.state_path(transfer)
            await asyncio.to_thread(unlink_all, part, state)
        self.bounds.forget(transfer)


def _touched_before(tmp: Path, cutoff: float) -> list[str]:
    """The transfers whose partial in ``tmp`` was last touched before ``cutoff``
    (its state file's time, else its ``.part``'s).  OSError."""
    touched: dict[str, float] = {}
    with os.scandir(tmp) as items:
        for item in items:
            transfer, _, ext = item.name.rpartition(".")
            if transfer and ext in ("part", "json"):
                with contextlib.suppress(FileNotFoundError):
                    mtime = item.stat(follow_symlinks=False).st_mtime
                    if ext == "json" or transfer not in touched:  # the state file's time wins
                        touched[transfer] = mtime
    return [transfer for transfer, mtime in touched.items() if mtime < cutoff]


def scan(tmp: Path) -> list[tuple[str, str, int, float, str]]:
    """(transfer, peer, bytes, last touched, name) of each partial in
    ``tmp``, read from its state file (peer and name "" when unreadable) and
    its ``.part``.  OSError when ``tmp`` cannot be listed."""
    found = []
    with os.scandir(tmp) as items:
        names = [item.name for item in items]
    for name in names:
        transfer, _, ext = name.rpartition(".")
        if not transfer or ext != "json":
            continue
        path = tmp / name
        try:
            touched = path.stat().st_mtime
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        peer = saved.get("peer") if isinstance(saved, dict) else None
        of = saved.get("name") if isinstance(saved, dict) else None
        try:
            size = (tmp / f"{transfer}.part").stat().st_size
        except OSError:
            size = 0
        found.append(
            (transfer, peer if isinstance(peer, str) else "", size, touched, of if isinstance(of, str) else "")
        )
    return found


__all__ = ["PartialKeeper", "scan"]
