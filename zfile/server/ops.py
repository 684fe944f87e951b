"""File operations on stored files: the daemon's side of REMOVE, MOVE, STAT,
CHECK and PING.

Each operation is one request and one answer (docs/protocol.md, "File
operations"); :class:`Operations` turns a request into its answer through
the :class:`~zfile.store.base.Store` interface alone, so every backend
serves it.  A refusal that concerns one file (a bad name, a file not found)
is that file's result and never stops the others; a failure of the whole
request (a bad prefix, the store down) is raised as a ZfileError and
answered with an ERROR by :mod:`zfile.server.sessions`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from zfile import __version__
from zfile.errors import ZfileError
from zfile.protocol import PROTOCOL_VERSION, page_fit
from zfile.protocol.codec import MAX_HEADER_BYTES
from zfile.protocol.events import (
    Check,
    Event,
    FileResult,
    Move,
    MoveOk,
    Ping,
    Pong,
    Remove,
    RemoveOk,
    Stat,
    StatOk,
)
from zfile.protocol.quickcheck import answer_check
from zfile.store import Store

# The same logger as the transfers': operators filter the daemon's records by it.
log = logging.getLogger("zfile.server")


class Operations:
    """Answers to file operations on ``store``; ``running`` counts the
    transfers in flight (for PING), ``curve`` says whether the socket speaks
    CurveZMQ (set by the server once it is bound)."""

    def __init__(self, store: Store, running: Callable[[], int]) -> None:
        self.store = store
        self.running = running
        self.curve = False
        #: The daemon refuses every change (ServerConfig.read_only), for PING.
        self.read_only = False
        self._started = time.monotonic()

    async def answer(self, request: Event, who: str) -> Event:
        """The answer to ``request`` from the peer ``who`` (its CURVE key or
        address, for the log).  ZfileError when the whole request fails."""
        if isinstance(request, Remove):
            return await self.remove(request, who)
        if isinstance(request, Move):
            return await self.move(request, who)
        if isinstance(request, Stat):
            return StatOk(request.id, await self.store.lookup(request.name))
        if isinstance(request, Ping):
            return self.ping(request)
        if isinstance(request, Check):
            return answer_check(request, await self.store.held(request.names))
        raise TypeError(f"{request.TYPE} is not a file operation")

    async def remove(self, req: Remove, who: str) -> RemoveOk:
        """Remove the files ``req`` names, or a page of the tree under its
        prefix: at most ``req.limit`` entries after ``req.after``, fewer when
        their names would not fit one answer's frame 0, with ``more`` set when
        entries remain.  Store.delete_many removes them at once, each atomically for readers.
        BadName (raised) for a bad prefix or cursor."""
        if req.names:
            return RemoveOk(req.id, (), await self._remove(req.names, who))
        entries = await self.store.list(req.prefix, req.after, req.limit + 1)
        # Each name is answered with a result as well: half the frame for the names.
        count = page_fit(entries[: req.limit], MAX_HEADER_BYTES // 2) if entries else 0
        names = tuple(e.name for e in entries[:count])
        return RemoveOk(req.id, names, await self._remove(names, who), more=len(entries) > count)

    async def move(self, req: Move, who: str) -> MoveOk:
        """Rename ``req.name`` to ``req.to`` through Store.rename (its
        errors raised: BadName, NotFound, Exists, ...)."""
        try:
            entry = await self.store.rename(req.name, req.to, clobber=req.clobber)
        except ZfileError as exc:
            log.info("peer=%s move name=%r to=%r refused: %s", who, req.name, req.to, exc)
            raise
        log.info("peer=%s moved name=%r to=%r bytes=%d", who, req.name, req.to, entry.size)
        return MoveOk(req.id, entry)

    def ping(self, req: Ping) -> Pong:
        """The daemon's figures: free bytes from Store.usage (None for a
        store without a limit), uptime in seconds since this daemon started."""
        return Pong(
            req.id,
            version=__version__,
            protocol=PROTOCOL_VERSION,
            uptime=time.monotonic() - self._started,
            transfers=self.running(),
            curve=self.curve,
            free=self.store.usage().free,
            read_only=self.read_only,
        )

    async def _remove(self, names: tuple[str, ...], who: str) -> tuple[FileResult, ...]:
        results = []
        for name, done in zip(names, await self.store.delete_many(names), strict=True):
            if isinstance(done, ZfileError):
                log.info("peer=%s remove name=%r refused: %s", who, name, done)
                results.append(FileResult(done.code.value, str(done)))
            else:
                log.info("peer=%s removed name=%r bytes=%d digest=%s", who, name, done.size, done.digest.hex()[:16])
                results.append(FileResult(digest=done.digest))
        return tuple(results)


__all__ = ["Operations"]
