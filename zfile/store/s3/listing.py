"""The S3 backend's listing: ListObjectsV2 pages under the store's prefix
made entries, each from its object's metadata by a HeadObject, unless the
object was seen before with the same ETag, time and size (a cache by key).

Objects that are not zfile's (no entry in their metadata), names the
protocol refuses, and the private ``.zfile/`` keys are left out.  Order is
UTF-8 byte order, ListObjectsV2's own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from zfile.errors import BadName
from zfile.protocol.events import Entry
from zfile.protocol.names import PRIVATE_DIR, check_name, check_prefix, quote_name
from zfile.store.s3.client import Bucket

#: HeadObject requests of one list in flight at once (and DeleteObject requests of one delete_many).
HEADS_IN_FLIGHT = 32
#: Entries the cache keeps (by key, valid while the ETag, time and size match).
CACHE_ENTRIES = 100_000

#: A HeadObject of a stored name: its entry and ETag, None when it is not zfile's.
Head = Callable[[str], Awaitable[tuple[Entry, str] | None]]


class Listing:
    """The listing of the names under ``prefix`` (a key prefix, ending in
    ``/`` or empty) of ``bucket``; ``head`` looks one name up."""

    def __init__(self, bucket: Bucket, prefix: str, max_name_bytes: int, head: Head) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._max_name_bytes = max_name_bytes
        self._head = head
        self._cache: dict[str, tuple[tuple[Any, ...], Entry]] = {}

    def forget(self, name: str) -> None:
        """Drop the cached entry of ``name`` (its object was removed or replaced)."""
        self._cache.pop(self._prefix + name, None)

    async def page(self, prefix: str, after: str, limit: int) -> list[Entry]:
        """Up to ``limit`` entries whose names start with ``prefix`` and sort
        after ``after`` ("" for the first page).  BadName for a bad prefix
        or a cursor that is not UTF-8; StoreError when the bucket fails."""
        check_prefix(prefix, self._max_name_bytes)
        try:
            after.encode()
        except UnicodeEncodeError:
            raise BadName(f"the cursor {quote_name(after)} cannot be encoded as UTF-8") from None
        entries: list[Entry] = []
        private = f"{PRIVATE_DIR}/"
        token: str | None = None
        slots = asyncio.Semaphore(HEADS_IN_FLIGHT)

        async def entry_of(obj: dict) -> Entry | None:
            name = obj["Key"][len(self._prefix) :]
            seen = (obj.get("ETag"), obj.get("LastModified"), obj.get("Size"))
            cached = self._cache.get(obj["Key"])
            if cached is not None and cached[0] == seen:
                return cached[1]
            async with slots:
                found = await self._head(name)
            if found is None:
                return None
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[obj["Key"]] = (seen, found[0])
            return found[0]

        while len(entries) < limit:
            kw: dict[str, Any] = {"Prefix": self._prefix + prefix, "MaxKeys": 1000}
            if token:
                kw["ContinuationToken"] = token
            elif after:
                kw["StartAfter"] = self._prefix + after
            page = await self._bucket.call("list the store", "list_objects_v2", **kw)
            objs = []
            for obj in page.get("Contents", []):
                name = obj["Key"][len(self._prefix) :]
                if name.startswith(private):
                    continue
                try:
                    check_name(name, self._max_name_bytes)
                except BadName:
                    continue
                objs.append(obj)
            while objs and len(entries) < limit:
                batch, objs = objs[: limit - len(entries)], objs[limit - len(entries) :]
                found = await asyncio.gather(*(entry_of(o) for o in batch))
                entries.extend(e for e in found if e is not None)
            if not page.get("IsTruncated"):
                break
            token = page["NextContinuationToken"]
        return entries


__all__ = ["CACHE_ENTRIES", "HEADS_IN_FLIGHT", "Head", "Listing"]
