"""A transfer in flight as the daemon keeps it: :class:`Session`, what
:class:`zfile.server.sessions.Transfers` tables and hands to the work of
each request, and :class:`Table`, what that work needs of the table.
Times are :func:`time.monotonic` seconds, offsets bytes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from zfile import protocol
from zfile.fileio.chunks import Tracker
from zfile.protocol.events import Event, PutMany
from zfile.server.config import ServerConfig
from zfile.store import Store


@dataclass(eq=False)
class Session:
    """One transfer in flight: the peer it belongs to (ROUTER ``identity``,
    ``peer`` address, CURVE ``peer_key``), its protocol state
    (``transfer``), the events its peer sent and the task doing its work."""

    identity: bytes
    peer: str
    transfer: protocol.Transfer
    name: str = ""
    #: The CURVE public key the peer authenticated with ("" without CURVE).
    peer_key: str = ""
    last_heard: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    credit_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    #: (monotonic time, stream offset) when the current rate period began;
    #: None until the stream flows (see zfile.server.sessions.Transfers.too_slow).
    rate_mark: tuple[float, int] | None = None

    @property
    def key(self) -> tuple[bytes, int]:
        return (self.identity, self.transfer.id)

    @property
    def owner(self) -> str | bytes:
        """Whose transfer this is, for the per-client cap: the CURVE key the
        peer authenticated with, else its connection's routing identity."""
        return self.peer_key or self.identity

    @property
    def who(self) -> str:
        """The peer as recorded in the catalog and logs: its CURVE key, else its address."""
        return self.peer_key or self.peer or "?"

    def waits_on_peer(self) -> bool:
        t = self.transfer
        if t.state is protocol.State.PUT_SENDING:
            return self.queue.empty()
        if t.state is protocol.State.GET_RECEIVING:
            return t.credit == 0
        return t.state is protocol.State.LIST_PAGED


class Table(Protocol):
    """What the work of a request run outside :mod:`zfile.server.sessions`
    (downloads, chain uploads) needs of the session table,
    :class:`zfile.server.sessions.Transfers`, named here so that those
    modules need not import the table that imports them."""

    config: ServerConfig
    store: Store
    sessions: dict[tuple[bytes, int], Session]

    async def send_in(self, session: Session, event: Event, *, track: bool = False) -> Tracker | None: ...

    def upload_window(self) -> int: ...

    def log_transfer(self, session: Session, direction: str, nbytes: int, began: float, digest: bytes, result: str): ...

    def finish(self, session: Session, exc: BaseException | None) -> None: ...

    async def logged(
        self, session: Session, work: Callable[[], Awaitable[tuple[int, bytes, str]]], direction: str = "in"
    ) -> None: ...


def log_name(req: PutMany) -> str:
    """How a PUT-MANY is named in its log line: its file's name when it holds one."""
    if len(req.files) == 1:
        return req.files[0].name
    return f"{req.files[0].name} and {len(req.files) - 1} more"


__all__ = ["Session", "Table", "log_name"]
