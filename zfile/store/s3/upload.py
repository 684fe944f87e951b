"""An upload into the S3 backend: :class:`S3Upload`, made by
:meth:`zfile.store.s3.S3Store.begin_upload`.

A file of at most one part (:func:`part_size`, 8 MiB or more) is held in
memory and stored with one PutObject at commit.  A larger one is streamed
as an S3 multipart upload (CreateMultipartUpload, UploadPart,
CompleteMultipartUpload) to the file's own key: each part is sent as soon
as it is full, at most :data:`PARTS_IN_FLIGHT` at a time (a write waits for
a slot), so an upload holds at most ``PARTS_IN_FLIGHT + 1`` parts in memory
whatever the file's size.  An S3 object appears only when its multipart
upload is completed, so a reader never sees part of the file.

The entry is set in two steps, because metadata is fixed when a multipart
upload is created and the digest is known only at its end: the upload is
created with every field of the entry but the digest (a key without a
digest is not a zfile entry: ``ls``, ``stat`` and ``get`` skip it), and
after CompleteMultipartUpload the store writes the whole entry
(:meth:`~zfile.store.s3.S3Store.set_entry`, a metadata-only CopyObject of
the object onto itself where the store allows it).

Bytes are hashed as they come and the digest is checked before
CompleteMultipartUpload; a mismatch aborts the upload, and what the key
held before is untouched.

Resume: the upload id is kept in a small state object,
``<prefix>.zfile/uploads/<transfer>.<algo>`` (the transfer id is a hash of
name, size and mtime), so a daemon, also one restarted after ``kill -9``,
finds its upload again and lists its parts (ListParts); the upload goes on
after the longest run of full parts from part 1.  A part's bytes cannot be
read back before completion, so the digest of a resumed upload is checked
after CompleteMultipartUpload, by reading the object, and only then is the
entry's digest written; a mismatch deletes the object.  An upload
completed whose entry was never finished (the daemon stopped in between)
is found the same way and resumed at its end: the next commit checks and
finishes it.

A stream (PUT-STREAM, made by :meth:`~zfile.store.s3.S3Store.begin_stream`)
has no size until its commit, so its parts grow: :func:`stream_part_size`.
One that ends within its first part is one PutObject; a longer one is a
multipart upload as above, with no state object, since nothing can resume
it: whatever stops it aborts the upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from typing import Any, Protocol

from zfile.errors import IntegrityError, StoreError, TooLarge, ZfileError
from zfile.protocol.events import Buffer, Entry
from zfile.protocol.names import quote_name
from zfile.store.base import StreamHandle, UploadHandle
from zfile.store.cleanup import uninterrupted
from zfile.store.s3.client import Bucket, BufferBody
from zfile.store.s3.download import hash_object
from zfile.store.s3.meta import TRANSFER, pending_metadata

log = logging.getLogger(__name__)

MiB = 1 << 20
#: Smallest part (bytes), and the most parts an upload may have (S3's limit).
MIN_PART = 8 * MiB
MAX_PARTS = 10_000
#: UploadPart requests one upload keeps going at once.
PARTS_IN_FLIGHT = 3
#: A stream's parts double in size every this many parts (stream_part_size).
STREAM_TIER = 1000

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_UPLOAD = frozenset({"NoSuchUpload", "404"})


def part_size(size: int) -> int:
    """Bytes per part for a file of ``size`` bytes: 8 MiB, or more (whole
    MiB) when the file would need more than 10,000 parts (past 78 GiB).
    The same for every begin of one file, so a resume finds its parts whole."""
    return max(MIN_PART, math.ceil(size / MAX_PARTS / MiB) * MiB)


def stream_part_size(number: int) -> int:
    """Bytes of part ``number`` (from 1) of a stream, whose size is not known
    ahead: 8 MiB for the first :data:`STREAM_TIER` parts (8 GiB), then
    twice as much every :data:`STREAM_TIER` parts, to 4 GiB (under S3's
    5 GiB a part), so that 10,000 parts hold about 8 TiB while a stream of
    a few GiB keeps 8 MiB parts (and its memory, ``PARTS_IN_FLIGHT + 1``
    parts, small)."""
    return MIN_PART << min((number - 1) // STREAM_TIER, 9)


class Staging(Protocol):
    """What an upload needs of its store (:class:`~zfile.store.s3.S3Store`):
    the bucket, a name's key, where a transfer's upload id is kept, and the
    ways a verified upload is published."""

    bucket: Bucket

    def key(self, name: str) -> str: ...

    def state_key(self, transfer: str, algo: str) -> str: ...

    def release(self, transfer: str, holder: object) -> None: ...

    async def put_object(self, name: str, body: Buffer, entry: Entry, clobber: bool) -> Entry: ...

    async def refuse_existing(self, name: str) -> None: ...

    async def set_entry(self, entry: Entry) -> Entry: ...

    async def delete_key(self, key: str) -> None: ...


class S3Upload(UploadHandle, StreamHandle):
    """One upload (module docstring).  ``state`` holds name, size, mtime_ns,
    mode (masked), algo and peer, as :meth:`S3Store.begin_upload` got them.
    With a ``limit`` it is a stream of at most that many bytes, whose size
    (0 in ``state`` until then) is given to :meth:`commit`."""

    def __init__(
        self, store: Staging, transfer: str, state: dict[str, Any], clobber: bool, hasher, limit: int | None = None
    ) -> None:
        self.transfer = transfer
        self.offset = 0
        self.live = True
        self.state = state
        self.name: str = state["name"]
        self.stream = limit is not None
        # A stream's declared size is its limit until the commit: no write can pass it.
        self.size: int = state["size"] if limit is None else limit
        self._store = store
        self._bucket = store.bucket
        self._clobber = clobber
        self._hasher = hasher
        self._part = MIN_PART if self.stream else part_size(self.size)
        self._whole = not self.stream and self.size <= self._part
        self.key = store.key(self.name)
        self._state_key = store.state_key(transfer, state["algo"])
        self._upload_id: str | None = None
        self._parts: dict[int, str] = {}  # part number -> ETag
        self._next_part = 1
        self._resumed = False  # parts held from before: the digest is checked by reading them back
        self._completed = False  # completed before, its entry unfinished: only the check is left
        self._buf: bytearray | None = None
        self._fill = 0
        self._spare: list[bytearray] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(PARTS_IN_FLIGHT)
        self._failed: ZfileError | None = None

    # -- resume ------------------------------------------------------------

    async def resume(self) -> None:
        """Take up what an earlier upload of this file left: the multipart
        upload named by the state object and its full parts from part 1 on
        (GetObject, ListParts), or a completed object whose entry was never
        finished (HeadObject).  Sets :attr:`offset`; StoreError when the
        store cannot be read."""
        if self._whole:
            return
        what = f"look for an interrupted upload of {quote_name(self.name)}"
        try:
            got = await self._bucket.call(what, "get_object", passthrough=_MISSING, Key=self._state_key)
        except ZfileError:
            raise
        except Exception:
            return  # no state object: nothing to resume
        try:
            upload_id = (await got["Body"].read()).decode()
        finally:
            got["Body"].close()
        sizes: dict[int, tuple[int, str]] = {}
        marker = 0
        try:
            while True:
                page = await self._bucket.call(
                    what,
                    "list_parts",
                    passthrough=_NO_UPLOAD,
                    Key=self.key,
                    UploadId=upload_id,
                    PartNumberMarker=marker,
                )
                for p in page.get("Parts", []):
                    sizes[p["PartNumber"]] = (p["Size"], p["ETag"])
                if not page.get("IsTruncated"):
                    break
                marker = int(page["NextPartNumberMarker"])
        except ZfileError:
            raise
        except Exception:
            await self._resume_completed(what)
            return
        n = 1
        while n in sizes and sizes[n][0] == self._part and n * self._part <= self.size:
            self._parts[n] = sizes[n][1]
            n += 1
        self._upload_id = upload_id
        self._next_part = n
        self.offset = (n - 1) * self._part
        self._resumed = self.offset > 0

    async def _resume_completed(self, what: str) -> None:
        """The state object names an upload the store no longer has: if the
        key holds the object this transfer completed, entry unfinished, take
        it up at its end."""
        try:
            head = await self._bucket.call(what, "head_object", passthrough=_MISSING, Key=self.key)
        except ZfileError:
            raise
        except Exception:
            return
        meta = head.get("Metadata", {})
        if meta.get(TRANSFER) == self.transfer and "zfile-digest" not in meta and head["ContentLength"] == self.size:
            self.offset = self.size
            self._resumed = self._completed = True

    # -- the handle ----------------------------------------------------------

    def written_digest(self) -> bytes | None:
        """The digest of the bytes written so far; None once resumed (the
        parts held from before are hashed only when read back at the commit)."""
        return None if self._resumed else self._hasher.digest()

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
        if self.stream and offset + view.nbytes > self.size:
            raise TooLarge(f"{q} passed {self.size} bytes, the most the store accepts")
        if offset + view.nbytes > self.size:
            raise IntegrityError(f"{q} runs past its declared size of {self.size} bytes")
        if self._failed is not None:
            raise self._failed
        if not self._resumed:
            self._hasher.update(view)
        while view:
            if self._buf is None:
                want = self.size if self._whole else self._part_bytes(self._next_part)
                while self._spare and len(self._spare[-1]) != want:
                    self._spare.pop()  # a stream's parts grew past it
                self._buf = self._spare.pop() if self._spare else bytearray(want)
            take = min(len(self._buf) - self._fill, view.nbytes)
            self._buf[self._fill : self._fill + take] = view[:take]
            self._fill += take
            self.offset += take
            view = view[take:]
            if not self._whole and self._fill == len(self._buf):
                await self._send_part()

    def _part_bytes(self, number: int) -> int:
        """The size of part ``number``: :attr:`_part`, or a stream's growing one."""
        return stream_part_size(number) if self.stream else self._part

    async def _create(self) -> None:
        """CreateMultipartUpload at the file's key with the entry less its
        digest, then the state object that lets a later daemon find it."""
        q = quote_name(self.name)
        created = await self._bucket.call(
            f"start the upload of {q}",
            "create_multipart_upload",
            Key=self.key,
            Metadata=pending_metadata(self._entry(b""), self.transfer),
            ContentType="application/octet-stream",
        )
        upload_id = created["UploadId"]
        if self.stream:  # nothing can resume it: no state object to find it by
            self._upload_id = upload_id
            return
        try:
            await self._bucket.call(
                f"start the upload of {q}", "put_object", Key=self._state_key, Body=upload_id.encode()
            )
        except BaseException:
            with contextlib.suppress(ZfileError):
                await self._bucket.call(
                    f"drop the upload of {q}", "abort_multipart_upload", Key=self.key, UploadId=upload_id
                )
            raise
        self._upload_id = upload_id

    async def _send_part(self) -> None:
        """Start the UploadPart of the buffer once a slot is free."""
        await self._slots.acquire()
        try:
            if self._upload_id is None:
                await self._create()
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
                Key=self.key,
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
            if len(buf) == self._part_bytes(number):
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
                    Key=self.key,
                    UploadId=self._upload_id,
                )
            if not self.stream:
                await self._store.delete_key(self._state_key)

    async def commit(self, digest: bytes, size: int | None = None) -> Entry:
        """Check and publish the file (UploadHandle.commit; module docstring
        for the order of S3 requests).  IntegrityError when bytes are missing
        (parts kept) or the digest differs (upload aborted); Exists when the
        name was taken meanwhile and ``clobber`` is off (parts kept);
        StoreError or NoSpace when the store fails (parts kept where they
        can be).  A stream's ``size`` is the bytes it declares at its end:
        IntegrityError (upload aborted) when that is not the bytes written."""
        self._check_live()
        q = quote_name(self.name)
        if self.stream:
            await self._fix_size(size)
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

    async def _fix_size(self, size: int | None) -> None:
        """A stream's size, now known: IntegrityError (upload aborted) when
        it is not the bytes written; a stream that never filled its first
        part is stored whole, with one PutObject."""
        if size != self.offset:
            await self.abort()
            raise IntegrityError(
                f"the stream of {quote_name(self.name)} ended after {self.offset} bytes, "
                f"but its end says {size}; discarded them"
            )
        self.size = self.state["size"] = size
        if self._upload_id is None and self._next_part == 1:
            self._whole = True
            if self._buf is not None:
                del self._buf[self._fill :]

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
        if not self._clobber and not self._completed:
            await self._store.refuse_existing(self.name)  # not atomic across daemons (S3 has no such test)
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
        if not self._completed:
            parts = [{"PartNumber": n, "ETag": etag} for n, etag in sorted(self._parts.items())]
            await self._bucket.call(
                f"complete the upload of {q}",
                "complete_multipart_upload",
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
        if self._resumed:
            got = await hash_object(self._bucket, self.key, self.name, self.state["algo"], self.size)
            if got != digest:
                await self._store.delete_key(self.key)
                await self._store.delete_key(self._state_key)
                raise IntegrityError(f"the digest of {q} does not match its bytes")
        entry = await self._store.set_entry(self._entry(digest))
        if not self.stream:
            await self._store.delete_key(self._state_key)
        return entry

    def _entry(self, digest: bytes) -> Entry:
        s = self.state
        return Entry(
            s["name"], s["size"], s["mtime_ns"], s["mode"], s["algo"], digest, time.time(), uuid.uuid4().hex, s["peer"]
        )

    async def suspend(self) -> None:
        """Keep the parts sent (the multipart upload stays open for a
        resume); what is buffered and not yet a whole part is dropped.  A
        no-op when finished; waits for the parts in flight even when
        cancelled meanwhile.  A stream cannot resume: it is aborted."""
        if self.stream:
            await self.abort()
        if not self.live:
            return
        try:
            await self._drain()
        finally:
            self._finish()

    async def abort(self) -> None:
        """Abort the multipart upload (AbortMultipartUpload), drop its state
        object and finish; a no-op when finished; runs to its end even when
        the caller is cancelled meanwhile."""
        if self.live:
            await uninterrupted(self._abort())

    async def _abort(self) -> None:
        if not self.live:
            return
        try:
            await self._drain()
            await self._abort_parts()
        finally:
            self._finish()
