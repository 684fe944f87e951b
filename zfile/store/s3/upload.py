"""An upload into the S3 backend: :class:`S3Upload`, made by
:meth:`zfile.store.s3.S3Store.begin_upload`.

A file of at most one part (:func:`part_size`, 8 MiB or more) is held in
memory and stored with one PutObject at commit.  A larger one is streamed
as an S3 multipart upload (CreateMultipartUpload, UploadPart,
CompleteMultipartUpload) to a private staging key derived from the
transfer id, ``<prefix>.zfile/uploads/<transfer>.<algo>``: each part is
sent as soon as it is full, at most :data:`PARTS_IN_FLIGHT` at a time (a
write waits for a slot), so an upload holds at most ``PARTS_IN_FLIGHT + 1``
parts in memory whatever the file's size.  Bytes are hashed as they come,
and the digest is checked before CompleteMultipartUpload; the completed
staging object is then copied, with the entry as its metadata, to the
file's key (CopyObject, or UploadPartCopy parts past 5 GiB) and deleted, so
the file's key only ever holds a whole, verified file.

Resume: :meth:`S3Upload.resume` finds the staging key's multipart upload
with ListMultipartUploads (it survives the daemon) and the parts it holds
with ListParts; the upload goes on after the longest run of full parts from
part 1.  A part's bytes cannot be read back before completion, so a resumed
upload's digest is checked after CompleteMultipartUpload, by reading the
staging object, still before the file's key is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from typing import Any, Protocol

from zfile.errors import IntegrityError, StoreError, ZfileError
from zfile.protocol.events import Buffer, Entry
from zfile.protocol.names import quote_name
from zfile.store.base import UploadHandle
from zfile.store.s3.client import Bucket, BufferBody

log = logging.getLogger(__name__)

MiB = 1 << 20
#: Smallest part (bytes), and the most parts an upload may have (S3's limit).
MIN_PART = 8 * MiB
MAX_PARTS = 10_000
#: UploadPart requests one upload keeps going at once.
PARTS_IN_FLIGHT = 3


def part_size(size: int) -> int:
    """Bytes per part for a file of ``size`` bytes: 8 MiB, or more (whole
    MiB) when the file would need more than 10,000 parts (past 78 GiB).
    The same for every begin of one file, so a resume finds its parts whole."""
    return max(MIN_PART, math.ceil(size / MAX_PARTS / MiB) * MiB)


class Staging(Protocol):
    """What an upload needs of its store (:class:`~zfile.store.s3.S3Store`):
    the bucket, where a transfer's parts are staged, and the ways a
    verified upload is published or dropped."""

    bucket: Bucket

    def staging_key(self, transfer: str, algo: str) -> str: ...

    def release(self, transfer: str, holder: object) -> None: ...

    async def put_object(self, name: str, body: Buffer, entry: Entry, clobber: bool) -> Entry: ...

    async def publish_copy(self, source: str, entry: Entry, clobber: bool) -> Entry: ...

    async def delete_key(self, key: str) -> None: ...


class S3Upload(UploadHandle):
    """One upload (module docstring).  ``state`` holds name, size, mtime_ns,
    mode (masked), algo and peer, as :meth:`S3Store.begin_upload` got them."""

    def __init__(self, store: Staging, transfer: str, state: dict[str, Any], clobber: bool, hasher) -> None:
        self.transfer = transfer
        self.offset = 0
        self.live = True
        self.state = state
        self.name: str = state["name"]
        self.size: int = state["size"]
        self._store = store
        self._bucket = store.bucket
        self._clobber = clobber
        self._hasher = hasher
        self._part = part_size(self.size)
        self._whole = self.size <= self._part
        self._key = store.staging_key(transfer, state["algo"])
        self._upload_id: str | None = None
        self._parts: dict[int, str] = {}  # part number -> ETag
        self._next_part = 1
        self._resumed = False  # parts held from before: the digest is checked by reading them back
        self._buf: bytearray | None = None
        self._fill = 0
        self._spare: list[bytearray] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(PARTS_IN_FLIGHT)
        self._failed: ZfileError | None = None

    # -- resume ------------------------------------------------------------

    async def resume(self) -> None:
        """Take up what an earlier upload of this file left: the staging
        key's newest multipart upload (older ones are aborted) and its full
        parts from part 1 on (ListMultipartUploads, ListParts).  Sets
        :attr:`offset`; StoreError when the store cannot be listed."""
        if self._whole:
            return
        what = f"look for an interrupted upload of {quote_name(self.name)}"
        listed = await self._bucket.call(what, "list_multipart_uploads", Prefix=self._key)
        uploads = sorted((u for u in listed.get("Uploads", []) if u["Key"] == self._key), key=lambda u: u["Initiated"])
        if not uploads:
            return
        for stale in uploads[:-1]:
            with contextlib.suppress(ZfileError):
                await self._bucket.call(what, "abort_multipart_upload", Key=self._key, UploadId=stale["UploadId"])
        upload_id = uploads[-1]["UploadId"]
        sizes: dict[int, tuple[int, str]] = {}
        marker = 0
        while True:
            page = await self._bucket.call(
                what, "list_parts", Key=self._key, UploadId=upload_id, PartNumberMarker=marker
            )
            for p in page.get("Parts", []):
                sizes[p["PartNumber"]] = (p["Size"], p["ETag"])
            if not page.get("IsTruncated"):
                break
            marker = int(page["NextPartNumberMarker"])
        n = 1
        while n in sizes and sizes[n][0] == self._part and n * self._part <= self.size:
            self._parts[n] = sizes[n][1]
            n += 1
        self._upload_id = upload_id
        self._next_part = n
        self.offset = (n - 1) * self._part
        self._resumed = self.offset > 0

    # -- the handle ----------------------------------------------------------

    def _check_live(self) -> None:
        if not self.live:
            raise StoreError(f"the upload of {quote_name(self.name)} is finished")

    async def write(self, offset: int, data: Buffer) -> None:
        """Append ``data`` at byte ``offset`` (UploadHandle.write): buffered,
        and sent as an UploadPart when a part is full, waiting while
        :data:`PARTS_IN_FLIGHT` parts are on their way."""
        self._check_live()
        q = quote_name(self.name)
        view = memoryview(data).cast("B")
        if offset != self.offset:
            raise IntegrityError(f"a chunk of {q} starts at byte {offset}, expected {self.offset}")
        if offset + view.nbytes > self.size:
            raise IntegrityError(f"{q} runs past its declared size of {self.size} bytes")
        if self._failed is not None:
            raise self._failed
        if not self._resumed:
            self._hasher.update(view)
        while view:
            if self._buf is None:
                self._buf = self._spare.pop() if self._spare else bytearray(self.size if self._whole else self._part)
            take = min(len(self._buf) - self._fill, view.nbytes)
            self._buf[self._fill : self._fill + take] = view[:take]
            self._fill += take
            self.offset += take
            view = view[take:]
            if not self._whole and self._fill == self._part:
                await self._send_part()

    async def _send_part(self) -> None:
        """Start the UploadPart of the buffer once a slot is free."""
        await self._slots.acquire()
        try:
            if self._upload_id is None:
                created = await self._bucket.call(
                    f"start the upload of {quote_name(self.name)}",
                    "create_multipart_upload",
                    Key=self._key,
                    ContentType="application/octet-stream",
                )
                self._upload_id = created["UploadId"]
        except BaseException:
            self._slots.release()
            raise
        buf, self._buf = self._buf, None
        assert buf is not None
        if self._fill < len(buf):
            del buf[self._fill :]  # the last part: shrunk in place, not copied
        self._fill = 0
        number, self._next_part = self._next_part, self._next_part + 1
        task = asyncio.create_task(self._upload_part(number, buf))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _upload_part(self, number: int, buf: bytearray) -> None:
        try:
            sent = await self._bucket.call(
                f"store part {number} of {quote_name(self.name)}",
                "upload_part",
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=BufferBody(buf),
            )
            self._parts[number] = sent["ETag"]
        except ZfileError as exc:
            self._failed = self._failed or exc
        except Exception as exc:  # an exception a bug let through: the upload still fails cleanly
            self._failed = self._failed or StoreError(f"could not store part {number} of {self.name}: {exc}")
        finally:
            if len(buf) == self._part:
                self._spare.append(buf)
            self._slots.release()

    async def _drain(self) -> None:
        """Wait for every part in flight, even when cancelled meanwhile."""
        while self._inflight:
            await asyncio.shield(asyncio.gather(*self._inflight, return_exceptions=True))

    def _finish(self) -> None:
        self.live = False
        self._buf = None
        self._spare.clear()
        self._store.release(self.transfer, self)

    async def _abort_parts(self) -> None:
        if self._upload_id is not None:
            with contextlib.suppress(ZfileError):
                await self._bucket.call(
                    f"drop the upload of {quote_name(self.name)}",
                    "abort_multipart_upload",
                    Key=self._key,
                    UploadId=self._upload_id,
                )

    async def commit(self, digest: bytes) -> Entry:
        """Check and publish the file (UploadHandle.commit; module docstring
        for the order of S3 requests).  IntegrityError when bytes are missing
        (parts kept) or the digest differs (upload aborted); Exists when the
        name was taken meanwhile and ``clobber`` is off (aborted); StoreError
        or NoSpace when the store fails (parts kept where they can be)."""
        self._check_live()
        q = quote_name(self.name)
        try:
            if self._failed is not None:
                raise self._failed
            if self.offset != self.size:
                raise IntegrityError(f"{q} ended at byte {self.offset} of {self.size}")
            if self._whole:
                if self._hasher.digest() != digest:
                    raise IntegrityError(f"the digest of {q} does not match its bytes")
                body = self._buf if self._buf is not None else bytearray()
                return await self._to_the_end(
                    self._store.put_object(self.name, body, self._entry(digest), self._clobber)
                )
            return await self._commit_parts(digest)
        finally:
            await self._drain()
            self._finish()

    async def _commit_parts(self, digest: bytes) -> Entry:
        q = quote_name(self.name)
        if self._fill:
            await self._send_part()
        await self._drain()
        if self._failed is not None:
            raise self._failed
        if not self._resumed and self._hasher.digest() != digest:
            await self._abort_parts()
            raise IntegrityError(f"the digest of {q} does not match its bytes")
        return await self._to_the_end(self._publish(digest))

    async def _to_the_end(self, work) -> Entry:
        """Await ``work`` (the publishing of verified bytes), which runs to its
        end even when the caller is cancelled meanwhile: a client that stops
        waiting for the answer (its timeout) must not undo a commit half
        made, nor leave a completed upload unpublished.  A failure nobody
        waits for any more is logged."""
        task = asyncio.ensure_future(work)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._log_orphan)
            raise

    def _log_orphan(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "could not commit %s after its sender stopped waiting: %s", quote_name(self.name), task.exception()
            )

    async def _publish(self, digest: bytes) -> Entry:
        q = quote_name(self.name)
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in sorted(self._parts.items())]
        await self._bucket.call(
            f"complete the upload of {q}",
            "complete_multipart_upload",
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
        )
        try:
            if self._resumed:
                from zfile.store.s3.download import hash_object

                got = await hash_object(self._bucket, self._key, self.name, self.state["algo"], self.size)
                if got != digest:
                    raise IntegrityError(f"the digest of {q} does not match its bytes")
            return await self._store.publish_copy(self._key, self._entry(digest), self._clobber)
        finally:
            await self._store.delete_key(self._key)

    def _entry(self, digest: bytes) -> Entry:
        s = self.state
        return Entry(
            s["name"], s["size"], s["mtime_ns"], s["mode"], s["algo"], digest, time.time(), uuid.uuid4().hex, s["peer"]
        )

    async def suspend(self) -> None:
        """Keep the parts sent (the multipart upload stays open for a
        resume); what is buffered and not yet a whole part is dropped.  A
        no-op when finished; waits for the parts in flight even when
        cancelled meanwhile."""
        if not self.live:
            return
        try:
            await self._drain()
        finally:
            self._finish()

    async def abort(self) -> None:
        """Abort the multipart upload (AbortMultipartUpload) and finish; a no-op when finished."""
        if not self.live:
            return
        try:
            await self._drain()
            await self._abort_parts()
        finally:
            self._finish()
