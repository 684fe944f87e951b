"""Keeping a client's wait alive while the daemon works on its answer.

A client waits for each answer at most its timeout (15 s by default) of
silence (zfile.client.channel).  A commit may take longer than that: an
object store that copies bytes to write the entry, a resumed upload read
back to check its digest, an fsync of many GiB.  While such work runs, the
daemon sends the client a sign of life every :data:`KEEPALIVE` seconds,
which resets the client's wait; for an upload that is a CREDIT of one byte
in PUT_CLOSING, which the protocol allows (docs/protocol.md, "CREDIT in
PUT_CLOSING") and which changes nothing: the client has no bytes left to
send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: Seconds between two signs of life: well under any client timeout worth
#: setting, and one small message a second costs nothing.
KEEPALIVE = 1.0


async def keep_alive(work: Awaitable[T], ping: Callable[[], Awaitable[object]], interval: float | None = None) -> T:
    """Await ``work`` and return its result, calling ``ping`` every
    ``interval`` seconds (default :data:`KEEPALIVE`) until it is done.  A cancel is passed on to
    ``work``, and returns once ``work`` has ended; ``work``'s errors and a
    failing ``ping``'s are raised (``work`` is then cancelled)."""
    interval = KEEPALIVE if interval is None else interval
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            if done:
                return task.result()
            await ping()
    except BaseException:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
        raise
