"""Clean-up that a cancelled task must still finish.

An upload's clean-up (a partial's state written back, a batch's temp files
removed, claims released) must run to its end even when the task awaiting
it is cancelled, as a daemon's shutdown or a vanished peer cancels it: a
half-done clean-up would leave a partial that neither resumes nor is swept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def uninterrupted(cleanup: Coroutine[Any, Any, None]) -> None:
    """Await ``cleanup`` to its end even if the awaiting task is cancelled
    meanwhile, then raise that cancellation (asyncio.CancelledError)."""
    task = asyncio.ensure_future(cleanup)
    cancelled = False
    while True:
        try:
            await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
