"""Replies outside any transfer (refusals: busy, bad request) that a full
pipe would otherwise drop.

The daemon's send pipe to one peer holds few messages
(:mod:`zfile.transport.sockets`), and one client with many transfers fills
it with their CREDITs, PUT-READYs and chunks.  A ROUTER send to a full pipe
fails at once; a refusal dropped then leaves that client's request waiting
out its whole timeout for an answer that never comes (one client starting
100 uploads against a limit of 64 per client: the 36 ``busy`` answers sent
while the pipe was full were lost).  :class:`PendingReplies` keeps such a
reply and sends it again, in order per peer, backing off from 1 ms to
100 ms, for up to ``patience`` seconds; a peer that reads nothing for that
long loses it, as a peer that is gone does at once.  At most ``limit``
replies wait per peer (beyond that the newest is dropped, as before), so a
client that floods refused requests and reads nothing costs bounded memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from zfile.errors import TransportError
from zfile.protocol.events import Event
from zfile.transport.sockets import ServerSocket

#: Replies that may wait for room per peer.
DEFAULT_LIMIT = 256


class PendingReplies:
    """Best-effort replies on ``sock`` that wait for room in a full pipe.

    ``patience`` is how long (seconds) a waiting reply is retried before
    it is dropped; ``limit`` how many may wait per peer.  :meth:`send` never
    raises and never waits.
    """

    def __init__(self, sock: ServerSocket, patience: float, limit: int = DEFAULT_LIMIT) -> None:
        self._sock = sock
        self._patience = patience
        self._limit = limit
        self._waiting: dict[bytes, deque[tuple[float, Event]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Replies waiting for room, over all peers."""
        return sum(len(q) for q in self._waiting.values())

    def send(self, identity: bytes, event: Event) -> None:
        """Send ``event`` to the peer ``identity`` now, or once its pipe has
        room (after the replies already waiting for it); dropped when the
        peer is gone, or when ``limit`` replies already wait for it."""
        queue = self._waiting.get(identity)
        if queue is not None:  # keep the order: behind those already waiting
            if len(queue) < self._limit:
                queue.append((time.monotonic() + self._patience, event))
            return
        try:
            if self._sock.send(identity, event):
                return
        except TransportError:
            return  # the peer is gone: nobody to tell
        self._waiting[identity] = deque([(time.monotonic() + self._patience, event)])
        task = asyncio.get_running_loop().create_task(self._drain(identity), name="zfile-pending-replies")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, identity: bytes) -> None:
        queue = self._waiting[identity]
        delay = 0.001
        try:
            while queue:
                deadline, event = queue[0]
                try:
                    sent = self._sock.send(identity, event)
                except TransportError:
                    return  # gone: the rest cannot be delivered either
                if sent:
                    queue.popleft()
                    delay = 0.001
                    continue
                if time.monotonic() >= deadline:
                    queue.popleft()  # the peer read nothing for `patience` seconds
                    continue
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
        finally:
            del self._waiting[identity]

    def cancel(self) -> list[asyncio.Task[None]]:
        """Stop retrying (what still waits is dropped); returns the tasks to
        await."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks


__all__ = ["DEFAULT_LIMIT", "PendingReplies"]
