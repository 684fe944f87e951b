"""Chain fan-out on the daemon: store an upload and forward it as it arrives.

A PUT that names a ``chain`` (docs/protocol.md, "Chain fan-out") is stored
here like any upload and, chunk by chunk, handed to the next node of the
chain over a DEALER of this daemon's own (:class:`Successor`), with the rest
of the chain, so each node's link carries the file once.  A hop grants its
predecessor credit only for bytes it has both written and handed on
(:func:`zfile.protocol.credit.relayed`), so the slowest node paces the chain
and each hop holds at most one window of unconsumed bytes, plus the replay
bytes below.

A successor that cannot be reached, refuses, runs out of space or dies is
reported upstream (CHAIN-RESULT) and skipped: this hop links to the node
after it.  That node's upload from the failed one is still live (its
predecessor went away without a CANCEL); the new PUT, for the same file and
chain origin, takes it over (:meth:`Relays.adopt`) and answers PUT-READY with
the bytes it has received, so neither it nor the nodes after it start
again.  The bytes it missed are at most two windows
(:func:`~zfile.protocol.credit.replay_floor`); this hop keeps that many of
what it handed on in memory and sends them again.  A node that did not
adopt resumes from its own partial, or starts from 0 when this hop still
holds the bytes from there; otherwise it is reported failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque

from zfile.errors import (
    ErrorCode,
    StoreError,
    TransportError,
    ZfileError,
)
from zfile.protocol.credit import CreditWindow, relayed, replay_floor, resumed_window
from zfile.protocol.events import (
    Buffer,
    ChainResult,
    Chunk,
    Credit,
    Event,
    Put,
    PutEnd,
    PutOk,
    PutReady,
)
from zfile.server.session import Session, Table
from zfile.server.successor import Successor
from zfile.transport.curve import load_keypair
from zfile.transport.dealer import ClientCurve
from zfile.transport.endpoint import parse_endpoint

log = logging.getLogger("zfile.server")


class Relay:
    """One chain upload on this hop (module docstring)."""

    def __init__(self, relays: Relays, session: Session, put: Put, origin: str) -> None:
        self.relays = relays
        self.table = relays.table
        self.session = session
        self.put = put
        self.origin = origin
        self.successor: Successor | None = None
        #: Bytes consumed: written here and handed on (byte offset).
        self.position = 0
        #: (offset, bytes) handed on that a successor after a failed one may still miss.
        self.replay: deque[tuple[int, Buffer]] = deque()
        self.credit: CreditWindow | None = None
        self.upload_transfer = ""
        self.closing = False
        self.failed: list[str] = []
        #: Nodes reported committed: a re-link at the very end skips them.
        self.committed: set[str] = set()
        #: Every CHAIN-RESULT reported, sent again to an upstream that takes over.
        self.reported: list[ChainResult] = []

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.origin, self.put.name, self.put.size, self.put.mtime_ns)

    async def report(self, result: ChainResult) -> None:
        """Tell the upstream what became of a node after this one."""
        if result.ok:
            self.committed.add(result.endpoint)
        else:
            self.failed.append(result.endpoint)
            log.warning("chain: %s failed for %r: %s", result.endpoint, self.put.name, result.message)
        self.reported.append(result)
        await self._upstream(
            ChainResult(self.session.transfer.id, result.endpoint, result.code, result.message, result.digest)
        )

    async def _upstream(self, event: Event) -> None:
        """Send ``event`` to the upstream; when it has gone (the node before
        died or was skipped), go on without it: the hop before that one
        takes this upload over (:meth:`Relays.adopt`), or the idle sweep
        ends it, the partial kept."""
        try:
            await self.table.send_in(self.session, event)
        except TransportError as exc:
            log.debug("chain: %r: upstream %s unreachable: %s", self.put.name, self.session.peer or "?", exc)

    async def _fail_node(self, endpoint: str, exc: ZfileError) -> None:
        await self.report(ChainResult(0, endpoint, exc.code.value, str(exc)))

    async def link(self, chain: tuple[str, ...], have_from: int) -> None:
        """Link to the first node of ``chain`` that answers and can be sent
        what it misses from ``have_from`` on (the first byte this hop still
        holds); report each node skipped.  No successor when none is left."""
        self.successor = None
        curve = self.relays.curve()
        while chain:
            endpoint, rest = chain[0], chain[1:]
            chain = rest
            if endpoint in self.committed:
                continue  # reported committed before the node ahead of it failed
            successor = Successor(endpoint, rest, self.relays.timeout, self.report, self.table.config.window)
            try:
                offset = await successor.open(self.put, self.origin, curve)
                if offset < have_from:
                    raise StoreError(
                        f"{endpoint} resumes at byte {offset} but this hop holds only from byte {have_from}"
                    )
            except ZfileError as exc:
                successor.abandon()
                await self._fail_node(endpoint, exc)
                continue
            self.successor = successor
            return

    async def _skip(self, exc: ZfileError) -> None:
        """The successor failed: report it, link past it, replay."""
        failed = self.successor
        assert failed is not None
        failed.abandon()
        await self._fail_node(failed.endpoint, exc)
        have_from = self.replay[0][0] if self.replay else self.position
        await self.link(failed.rest, have_from)
        if self.successor is not None:
            log.info("chain: %r re-linked past %s to %s", self.put.name, failed.endpoint, self.successor.endpoint)

    async def _hand(self, offset: int, data: Buffer, replaying: list[bool]) -> None:
        while self.successor is not None:
            try:
                if replaying[0]:
                    for r_offset, r_data in list(self.replay):
                        await self.successor.hand(r_offset, r_data)
                    replaying[0] = False
                await self.successor.hand(offset, data)
                return
            except ZfileError as exc:
                await self._skip(exc)
                replaying[0] = True

    def _trim(self) -> None:
        if self.successor is None:
            self.replay.clear()
            return
        floor = replay_floor(self.successor.granted_end, self.successor.window)
        while self.replay and self.replay[0][0] + len(self.replay[0][1]) <= floor:
            self.replay.popleft()

    async def _finish_successor(self, digest: bytes, replaying: list[bool]) -> None:
        while self.successor is not None:
            successor = self.successor
            try:
                if replaying[0]:
                    for r_offset, r_data in list(self.replay):
                        await successor.hand(r_offset, r_data)
                    replaying[0] = False
                ok = await successor.finish(digest)
            except ZfileError as exc:
                await self._skip(exc)
                replaying[0] = True
                continue
            if ok.digest != digest:
                await self.report(ChainResult(0, successor.endpoint, ErrorCode.INTERNAL.value, "stored another digest"))
            else:
                await self.report(ChainResult(0, successor.endpoint, digest=ok.digest))
            successor.abandon()
            self.successor = None

    def adopted(self, received: int) -> int:
        """A new upstream takes this upload over from byte ``received`` (what
        the old one had sent): the credit window restarts there, within one
        window of what is consumed.  Returns the first grant (bytes)."""
        window = self.table.upload_window()
        received = max(received, self.position)
        self.credit = resumed_window(self.position, received, self.put.size, window, self.table.config.chunk_size)
        return self.credit.initial

    async def run(self) -> None:
        session, put, table = self.session, self.put, self.table
        began = time.monotonic()
        exc: BaseException | None = None
        upload = None
        try:
            upload = await table.store.begin_upload(
                name=put.name,
                size=put.size,
                mtime_ns=put.mtime_ns,
                mode=put.mode,
                algo=put.algo,
                clobber=put.clobber,
                peer=self.origin,
            )
            self.relays.live[self.key] = self
            self.upload_transfer = upload.transfer
            stored = upload.offset
            if put.chain:
                await self.link(put.chain, 0)
            start = stored if self.successor is None else min(stored, self.successor.offset)
            self.position = start
            window = table.upload_window()
            self.credit = CreditWindow(start, put.size, window, table.config.chunk_size)
            await table.send_in(session, PutReady(session.transfer.id, upload.transfer, start, self.credit.initial))
            replaying = [False]
            while True:
                event = await session.queue.get()
                if isinstance(event, Chunk):
                    offset, data = event.offset, event.data
                    end = offset + len(data)
                    work = [self._hand(offset, data, replaying)]
                    if end > stored:
                        skip = max(0, stored - offset)
                        work.append(upload.write(offset + skip, memoryview(data)[skip:]))
                    await asyncio.gather(*work)
                    stored = max(stored, end)
                    self.position = relayed(stored, end)
                    if self.successor is not None:
                        self.replay.append((offset, data))
                    self._trim()
                    if step := self.credit.grant(self.position, table.upload_window()):
                        await self._upstream(Credit(session.transfer.id, step))
                else:
                    assert isinstance(event, PutEnd)
                    self.closing = True
                    committed, forwarded = await asyncio.gather(
                        upload.commit(event.digest),
                        self._finish_successor(event.digest, replaying),
                        return_exceptions=True,
                    )
                    upload = None
                    self.replay.clear()
                    if isinstance(forwarded, BaseException):
                        raise forwarded
                    if isinstance(committed, BaseException):
                        raise committed
                    await table.send_in(session, PutOk(session.transfer.id, committed.size, committed.digest))
                    result = "ok" if not self.failed else f"ok, skipped {', '.join(self.failed)}"
                    table.log_transfer(session, "in", put.size, began, committed.digest, result)
                    return
        except asyncio.CancelledError:
            # The upstream cancelled (or the daemon stops): every node keeps its partial.
            if self.successor is not None:
                await self.successor.cancel()
            if upload is not None:
                try:
                    await upload.suspend()
                finally:
                    table.log_transfer(session, "in", 0, began, b"", "suspended")
            raise
        except Exception as e:
            exc = e
            # Dropped without a CANCEL: the hop before takes the successor over.
            if self.successor is not None:
                self.successor.abandon()
            try:
                if upload is not None:
                    with contextlib.suppress(StoreError):
                        await upload.suspend()
            finally:
                table.log_transfer(session, "in", 0, began, b"", f"failed: {e}")
        finally:
            if self.relays.live.get(self.key) is self:
                del self.relays.live[self.key]
            table.finish(self.session, exc)


class Relays:
    """The chain uploads running on this daemon, by (origin, name, size, mtime)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.live: dict[tuple[str, str, int, int], Relay] = {}
        self._curve: ClientCurve | None = None

    @property
    def timeout(self) -> float:
        """Seconds a hop waits on a silent successor (heartbeats show a dead one sooner)."""
        return self.table.config.idle_timeout

    def curve(self) -> ClientCurve | None:
        """CURVE for the links to successors: this daemon's own key pair,
        and as the successor's key the same public key, as ``send --to
        A,B,...`` expects one daemon key for every node."""
        config = self.table.config
        if config.secret_key is None:
            return None
        if self._curve is None:
            pair = load_keypair(config.secret_key)
            self._curve = ClientCurve(pair.public, pair)
        return self._curve

    def check(self, put: Put) -> Put:
        """The PUT to serve: as it came, or without its chain when this
        daemon does not forward (it stores the file only, and the client,
        missing the results of the nodes after it, sends to them itself).
        ZfileError bad-request for a chain that names a bad endpoint or a
        node twice."""
        if not put.chain:
            return put
        if not self.table.config.forward:
            log.info("chain: %r stored but not forwarded to %d node(s): forward is off", put.name, len(put.chain))
            return dataclasses.replace(put, chain=())
        for endpoint in put.chain:
            parse_endpoint(endpoint)
        if len(set(put.chain)) != len(put.chain):
            raise ZfileError("the chain names a node twice", code=ErrorCode.BAD_REQUEST)
        return put

    def origin_of(self, session: Session, put: Put) -> str:
        """Who started the chain: ``put.origin`` when the peer is a hop
        this daemon trusts to say so (under CURVE: it authenticated with the
        daemons' own key; without CURVE, where nothing is authenticated: this
        daemon forwards too), else the peer itself."""
        if not put.origin:
            return session.who
        curve = self.curve()
        if curve is None:
            return put.origin if self.table.config.forward else session.who
        return put.origin if session.peer_key == curve.keypair.public.decode() else session.who

    async def run(self, session: Session, put: Put) -> None:
        """Serve a chain upload (a PUT with a chain or an origin) on ``session``."""
        origin = self.origin_of(session, put)
        try:
            put = self.check(put)
        except ZfileError as exc:
            self.table.finish(session, exc)
            return
        relay = Relay(self, session, put, origin)
        existing = self.live.get(relay.key)
        if existing is not None and await self.adopt(existing, session):
            return
        await relay.run()

    async def adopt(self, relay: Relay, session: Session) -> bool:
        """Hand ``relay``'s live upload to the new upstream ``session`` (a
        PUT for the same file and origin: the hop before re-linked past a
        failed node).  False when the upload is closing."""
        if relay.closing:
            return False
        old = relay.session
        received = old.transfer.offset
        sessions = self.table.sessions
        if sessions.get(old.key) is old:
            del sessions[old.key]
        old.identity, old.peer, old.peer_key = session.identity, session.peer, session.peer_key
        old.transfer = session.transfer
        old.last_heard = time.monotonic()
        sessions[old.key] = old
        credit = relay.adopted(received)
        offset = max(received, relay.position)
        log.info("chain: %r taken over by %s at byte %d", relay.put.name, old.peer or "?", offset)
        await self.table.send_in(old, PutReady(old.transfer.id, relay.upload_transfer, offset, credit))
        # The new upstream may have missed what the old one was told.
        for result in relay.reported:
            event = ChainResult(old.transfer.id, result.endpoint, result.code, result.message, result.digest)
            await self.table.send_in(old, event)
        return True


__all__ = ["Relay", "Relays"]
