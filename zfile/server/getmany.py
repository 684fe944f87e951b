"""The daemon's side of GET-MANY: many small stored files read whole into one reply.

A small file costs a download its round trips and messages, not its bytes:
a GET needs GET-META and a CHUNK, and the daemon opens, reads and closes the
file in several worker-thread hops.  :func:`read_many` answers a whole
GET-MANY instead, in the order of its names, within the request's byte
budget (``most``, at most ``MAX_MANY_BYTES``): for the local store in two
worker-thread hops for the whole batch (:mod:`zfile.store.batch_read`), for any
other through its downloads, :data:`OPEN_AT_ONCE` at a time.  Each name is looked up and
read on its own: a bad name, a missing file or one that changed on disk is
refused in its own :class:`~zfile.protocol.events.GotFile` and the others go
on.  A file that would take the reply past ``most`` bytes is refused
``too-large`` (the client gets it with a GET of its own), so that a file
that grew after the client listed it, or a client that names large files,
cannot make the daemon hold more than ``most`` bytes for the reply.
Sizes and offsets are bytes.
"""

from __future__ import annotations

import asyncio

from zfile.errors import ErrorCode, StoreError, ZfileError
from zfile.protocol.events import Entry, GetMany, GetManyOk, GotFile
from zfile.protocol.names import quote_name
from zfile.store import DownloadHandle, LocalStore, Store
from zfile.store.batch_read import read_wholes

#: Files opened at once while a reply is gathered: their reads overlap, and
#: one request never holds more than this many descriptors.
OPEN_AT_ONCE = 32


async def read_many(store: Store, req: GetMany) -> GetManyOk:
    """The reply to ``req``: each named file whole, or why not, in order.

    Never raises for one file's failure: that file's GotFile carries the
    error code and a sentence (``internal`` for a failure that is not a
    zfile error).  The data frames together hold at most ``req.most``
    bytes.
    """
    if isinstance(store, LocalStore):
        return GetManyOk(req.id, tuple(_got(r) for r in await read_wholes(store, req.names, req.most)))
    budget = req.most
    out: list[GotFile] = []
    for start in range(0, len(req.names), OPEN_AT_ONCE):
        names = req.names[start : start + OPEN_AT_ONCE]
        opened = await asyncio.gather(*(_open(store, name) for name in names))
        try:
            # Budget in the order of the names, so that the reply does not
            # depend on which open finished first.
            chosen: list[tuple[int, DownloadHandle]] = []
            got: list[GotFile | None] = []
            for handle in opened:
                if isinstance(handle, GotFile):
                    got.append(handle)
                elif handle.entry.size > budget:
                    got.append(_too_large(handle.entry.name, handle.entry.size, req.most))
                else:
                    budget -= handle.entry.size
                    chosen.append((len(got), handle))
                    got.append(None)
            reads = await asyncio.gather(*(_read_whole(h) for _, h in chosen))
            for (k, _), result in zip(chosen, reads, strict=True):
                got[k] = result
            out.extend(g for g in got if g is not None)
        finally:
            await asyncio.gather(*(h.close() for h in opened if not isinstance(h, GotFile)))
    return GetManyOk(req.id, tuple(out))


async def _open(store: Store, name: str) -> DownloadHandle | GotFile:
    try:
        return await store.open_download(name)
    except ZfileError as exc:
        return _refused(exc)
    except Exception:  # one unreadable file must not sink the reply
        return GotFile(ErrorCode.INTERNAL.value, _text(f"{quote_name(name)} could not be opened"))


async def _read_whole(handle: DownloadHandle) -> GotFile:
    entry = handle.entry
    try:
        data = b""
        if entry.size:
            # The store's reader reads a cached file in the event loop, with
            # no worker-thread hop; it raises StoreError for a file that got
            # shorter than its entry.
            reader = handle.reader(0, entry.size)
            try:
                _, view = await reader.next()
                data = bytes(view)
            finally:
                await reader.aclose()
    except ZfileError as exc:
        return _refused(exc)
    except Exception:
        return GotFile(ErrorCode.INTERNAL.value, _text(f"{quote_name(entry.name)} could not be read"))
    if len(data) != entry.size:
        return _refused(StoreError(f"{quote_name(entry.name)} changed on disk while being read"))
    return GotFile(
        size=entry.size, mtime_ns=entry.mtime_ns, mode=entry.mode, algo=entry.algo, digest=entry.digest, data=data
    )


def _got(result: tuple[Entry, bytes] | ZfileError) -> GotFile:
    if isinstance(result, ZfileError):
        return _refused(result)
    entry, data = result
    return GotFile(
        size=entry.size, mtime_ns=entry.mtime_ns, mode=entry.mode, algo=entry.algo, digest=entry.digest, data=data
    )


def _text(message: str) -> str:
    """``message`` cut to the protocol's 4096 bytes of UTF-8 (a quoted long name can pass it)."""
    return message.encode("utf-8", "surrogatepass")[:4096].decode("utf-8", "ignore")


def _refused(exc: ZfileError) -> GotFile:
    return GotFile(exc.code.value, _text(str(exc)))


def _too_large(name: str, size: int, most: int) -> GotFile:
    why = f"{quote_name(name)} ({size} bytes) does not fit in this reply's {most} bytes; get it on its own"
    return GotFile(ErrorCode.TOO_LARGE.value, _text(why))


def summary(req: GetMany) -> str:
    """How a GET-MANY is named in its log line: its first name, and how many more."""
    return req.names[0] if len(req.names) == 1 else f"{req.names[0]} and {len(req.names) - 1} more"


def result(reply: GetManyOk) -> str:
    """A GET-MANY's result in its log line: how many of its files were sent."""
    return f"ok {sum(f.ok for f in reply.files)} of {len(reply.files)}"


__all__ = ["OPEN_AT_ONCE", "read_many", "result", "summary"]
