"""The S3 backend of the :class:`~zfile.store.base.Store` interface:
:class:`S3Store`, files as objects under ``s3://BUCKET/PREFIX/``.

The object store is the source of truth: the file ``a/b.txt`` is the object
``PREFIX/a/b.txt``, and its catalog entry is that object's user metadata
(:mod:`~zfile.store.s3.meta`), so every daemon on the bucket sees one
namespace and ``ls`` (ListObjectsV2, then a HeadObject per object not seen
before with that ETag) needs no GET.  A PutObject or CompleteMultipartUpload
makes an object appear whole, so a reader never sees part of a file.  The
parts it delegates:

- :mod:`~zfile.store.s3.upload`: an upload in progress, multipart and resume;
- :mod:`~zfile.store.s3.download`: ranged GETs and the chunk stream;
- :mod:`~zfile.store.s3.meta`: an entry as object metadata;
- :mod:`~zfile.store.s3.listing`: ListObjectsV2 pages made entries;
- :mod:`~zfile.store.s3.client`: aiobotocore, retries and the error mapping;
- :mod:`~zfile.store.s3.sweep`: uploads nobody came back for.

A multipart upload goes to the file's own key; its entry's digest is
written after completion (upload.py).  What is private to the store lives
under ``PREFIX/.zfile/`` (a name the protocol refuses): the state objects
that name the multipart upload of each transfer in progress.  Two daemons
that store the same name at once: each object appears whole and the last
completed wins; a ``clobber=False`` check is made with a HeadObject before
the write and is not atomic across daemons.  Two daemons that upload the
same file (name, size, mtime) at once share its state object, which is not
supported: one of them fails or the file must be sent again.  Sizes are
bytes, times seconds since the epoch (``mtime_ns``: nanoseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Sequence

from zfile.errors import Busy, ErrorCode, Exists, IntegrityError, NotFound, StoreError, TooLarge, ZfileError
from zfile.protocol import digest as digests
from zfile.protocol.events import Buffer, Entry, PutFile
from zfile.protocol.names import PRIVATE_DIR, check_name, quote_name
from zfile.protocol.quickcheck import Held
from zfile.store.base import Store, StoreUsage
from zfile.store.held import held_by_listing
from zfile.store.partial import transfer_id
from zfile.store.s3.client import Bucket, request_body
from zfile.store.s3.copy import ONE_COPY_LIMIT, copy_in_parts, copy_object
from zfile.store.s3.download import S3Download
from zfile.store.s3.listing import HEADS_IN_FLIGHT, Listing
from zfile.store.s3.meta import from_metadata, to_metadata
from zfile.store.s3.sweep import sweep
from zfile.store.s3.upload import S3Upload

_MODE_MASK = 0o777
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
#: How a store refuses a CopyObject it will not do in one request (S3: over 5 GiB).
_COPY_REFUSED = frozenset({"InvalidRequest", "EntityTooLarge", "InvalidArgument", "400"})
#: PutObject requests of small files in flight at once, across every
#: put_many of the store: a client sends several PUT-MANY messages at once
#: (four of 256 files of 4 KiB), and a limit per message let 128 requests
#: wait on the 64 connections (docs/s3.md, "Where the time goes").
PUTS_IN_FLIGHT = 32


def parse_location(location: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX/`` as (bucket, prefix); the prefix is "" or ends
    with "/".  StoreError without a bucket."""
    rest = location.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StoreError(f"the store location {location!r} names no bucket (expected s3://BUCKET/PREFIX/)")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


class S3Store(Store):
    """Files as objects under ``location`` (``s3://BUCKET/PREFIX/``) at the
    S3 ``endpoint`` (a URL; None: AWS); see the module docstring.

    ``max_file_size`` and ``max_name_bytes`` are in bytes; multipart uploads
    unused for ``partial_ttl`` seconds are aborted by :meth:`sweep_partials`.
    """

    def __init__(
        self,
        location: str,
        *,
        endpoint: str | None = None,
        max_file_size: int = 1 << 40,
        max_name_bytes: int = 4096,
        partial_ttl: float = 86400.0,
    ) -> None:
        self._location = location
        self.endpoint = endpoint
        self.max_file_size = max_file_size
        self.max_name_bytes = max_name_bytes
        self.partial_ttl = partial_ttl
        self._parsed: tuple[str, str] | None = None
        self._bad_location: StoreError | None = None
        try:
            self._parsed = parse_location(location)
        except StoreError as exc:
            self._bad_location = exc  # raised by open, as make_store promises
        bucket, self.prefix = self._parsed or ("", "")
        self.bucket = Bucket(bucket, endpoint)
        self._live: dict[str, object] = {}  # transfer -> the upload (or put) holding it
        self._put_slots = asyncio.Semaphore(PUTS_IN_FLIGHT)
        self._listing = Listing(self.bucket, self.prefix, max_name_bytes, self._head)

    @property
    def location(self) -> str:
        """The ``s3://`` URL, and the endpoint when one is set."""
        return self._location + (f" at {self.endpoint}" if self.endpoint else "")

    # -- keys ----------------------------------------------------------------

    def key(self, name: str) -> str:
        return self.prefix + name

    def state_key(self, transfer: str, algo: str) -> str:
        """The key of the object that holds an upload's id while it runs (upload.py)."""
        return f"{self.prefix}{PRIVATE_DIR}/uploads/{transfer}.{algo}"

    # -- open, close ---------------------------------------------------------

    async def open(self) -> None:
        """Make the client, check that the bucket answers (HeadBucket) and
        sweep stale uploads.  StoreError naming the cause when the location
        is malformed, aiobotocore is missing, the endpoint cannot be
        reached, the credentials are refused or the bucket does not exist."""
        if self._bad_location is not None:
            raise self._bad_location
        await self.bucket.open()
        try:
            try:
                await self.bucket.call("open the store", "head_bucket", passthrough=_MISSING | {"NoSuchBucket"})
            except ZfileError:
                raise
            except Exception as exc:
                raise StoreError(
                    f"could not open the store: the bucket {self.bucket.name!r} does not exist at "
                    f"the object store at {self.bucket.endpoint}"
                ) from exc
            await self.sweep_partials()
        except BaseException:
            await self.bucket.close()
            raise

    async def close(self) -> None:
        """Suspend live uploads (their parts stay for a resume) and close the client."""
        uploads = [u for u in self._live.values() if isinstance(u, S3Upload)]
        await asyncio.gather(*(u.suspend() for u in uploads), return_exceptions=True)
        await self.bucket.close()

    def _check_open(self) -> None:
        if not self.bucket.is_open:
            raise StoreError(f"the store {self.location} is not open")

    def release(self, transfer: str, holder: object) -> None:
        """Drop ``holder``'s claim on ``transfer`` (an upload that finished)."""
        if self._live.get(transfer) is holder:
            del self._live[transfer]

    def _claim(self, transfer: str, holder: object, name: str) -> None:
        if transfer in self._live:
            raise Busy(f"{quote_name(name)} is already being uploaded")
        self._live[transfer] = holder

    # -- uploads -------------------------------------------------------------

    def _admit(self, name: str, size: int, algo: str) -> digests.Hasher:
        """The checks that need no request, in the order Store.begin_upload gives."""
        self._check_open()
        check_name(name, self.max_name_bytes)
        hasher = digests.new_hasher(algo)
        if size < 0:
            raise ZfileError(f"the size of {quote_name(name)} is negative ({size} bytes)", code=ErrorCode.BAD_REQUEST)
        if size > self.max_file_size:
            raise TooLarge(f"{quote_name(name)} is {size} bytes; the store accepts at most {self.max_file_size} bytes")
        return hasher

    async def refuse_existing(self, name: str) -> None:
        """Exists when ``name``'s key holds a zfile entry (HeadObject)."""
        if await self._head(name) is not None:
            raise Exists(f"{quote_name(name)} already exists in the store")

    async def begin_upload(
        self, *, name: str, size: int, mtime_ns: int, mode: int, algo: str, clobber: bool, peer: str
    ) -> S3Upload:
        """Start, or resume, an upload (Store.begin_upload).  Refuses a bad
        name (BadName), an unknown ``algo`` or negative size (bad-request), a
        size over the limit (TooLarge), an existing object unless ``clobber``
        (Exists, by HeadObject), a live upload of the same file in this
        daemon (Busy).  There is no free-space check: S3 has no such query;
        a full store fails the writes (NoSpace).  A multipart upload an
        earlier begin of the same name, size, mtime_ns and algo left is
        resumed (S3Upload.resume)."""
        hasher = self._admit(name, size, algo)
        if not clobber:
            await self.refuse_existing(name)
        transfer = transfer_id(name, size, mtime_ns)
        state = dict(name=name, size=size, mtime_ns=mtime_ns, mode=mode & _MODE_MASK, algo=algo, peer=peer)
        upload = S3Upload(self, transfer, state, clobber, hasher)
        self._claim(transfer, upload, name)
        try:
            await upload.resume()
        except BaseException:
            self.release(transfer, upload)
            raise
        return upload

    async def begin_stream(
        self, *, name: str, mtime_ns: int, mode: int, algo: str, clobber: bool, peer: str
    ) -> S3Upload:
        """Start an upload whose size is known only at its commit
        (Store.begin_stream; upload.py): at most ``max_file_size`` bytes,
        under a fresh transfer id, never resumed.  Refuses a bad name
        (BadName), an unknown ``algo`` (bad-request), an existing object
        unless ``clobber`` (Exists, by HeadObject)."""
        hasher = self._admit(name, 0, algo)
        if not clobber:
            await self.refuse_existing(name)
        transfer = uuid.uuid4().hex
        state = dict(name=name, size=0, mtime_ns=mtime_ns, mode=mode & _MODE_MASK, algo=algo, peer=peer)
        upload = S3Upload(self, transfer, state, clobber, hasher, limit=self.max_file_size)
        self._claim(transfer, upload, name)
        return upload

    async def put_inline(
        self,
        *,
        name: str,
        size: int,
        mtime_ns: int,
        mode: int,
        algo: str,
        clobber: bool,
        peer: str,
        data: Buffer,
        digest: bytes,
    ) -> Entry:
        """Store a whole file with one PutObject (Store.put_inline)."""
        whole = PutFile(name, size, mtime_ns, mode, digest, clobber, data)
        (result,) = await self.put_many([whole], algo=algo, peer=peer)
        if isinstance(result, ZfileError):
            raise result
        return result

    async def put_many(self, files: Sequence[PutFile], *, algo: str, peer: str) -> list[Entry | ZfileError]:
        """Store whole files, one PutObject each, at most
        :data:`PUTS_IN_FLIGHT` at a time in the whole store (Store.put_many);
        a second file of one batch with the same name, size and mtime is Busy."""
        results: list[Entry | ZfileError | None] = [None] * len(files)
        slots = self._put_slots
        claimed: list[str] = []
        holder = object()

        async def put(k: int, f: PutFile) -> None:
            async with slots:
                try:
                    results[k] = await self._put_whole(f, algo, peer)
                except ZfileError as exc:
                    results[k] = exc

        jobs = []
        try:
            for k, f in enumerate(files):
                try:
                    self._admit(f.name, f.size, algo)
                    transfer = transfer_id(f.name, f.size, f.mtime_ns)
                    self._claim(transfer, holder, f.name)
                except ZfileError as exc:
                    results[k] = exc
                    continue
                claimed.append(transfer)
                jobs.append(put(k, f))
            await asyncio.gather(*jobs)
        finally:
            for transfer in claimed:
                self.release(transfer, holder)
        return results  # type: ignore[return-value]

    async def _put_whole(self, f: PutFile, algo: str, peer: str) -> Entry:
        q = quote_name(f.name)
        view = memoryview(f.data).cast("B")
        if view.nbytes != f.size:
            raise IntegrityError(f"{q} is {view.nbytes} bytes, not the {f.size} declared")
        hasher = digests.new_hasher(algo)
        hasher.update(view)
        if hasher.digest() != f.digest:
            raise IntegrityError(f"the digest of {q} does not match its bytes")
        mode = f.mode & _MODE_MASK
        entry = Entry(f.name, f.size, f.mtime_ns, mode, algo, bytes(f.digest), time.time(), uuid.uuid4().hex, peer)
        return await self.put_object(f.name, view, entry, f.clobber)

    async def put_object(self, name: str, body: Buffer, entry: Entry, clobber: bool) -> Entry:
        """Write ``body`` to ``name``'s key with ``entry`` as its metadata
        (one PutObject) and return ``entry``; Exists when ``clobber`` is off
        and the name is taken."""
        if not clobber:
            await self.refuse_existing(name)
        await self.bucket.call(
            f"store {quote_name(name)}",
            "put_object",
            Key=self.key(name),
            Body=request_body(body),
            Metadata=to_metadata(entry),
            ContentType="application/octet-stream",
        )
        return entry

    async def set_entry(self, entry: Entry) -> Entry:
        """Write ``entry`` as the metadata of the object already at its key
        (the completed multipart upload of its bytes) and return it: a
        CopyObject of the object onto itself, MetadataDirective REPLACE,
        which SeaweedFS does without copying the bytes (measured:
        docs/s3.md).  Past :data:`~zfile.store.s3.copy.ONE_COPY_LIMIT` a
        store that refuses that request (S3 does: a CopyObject copies at
        most 5 GiB) gets the copy in UploadPartCopy parts
        (:func:`~zfile.store.s3.copy.copy_in_parts`).  StoreError when the
        store fails."""
        what = f"store {quote_name(entry.name)}"
        key = self.key(entry.name)
        try:
            await self.bucket.call(
                what,
                "copy_object",
                passthrough=_COPY_REFUSED if entry.size > ONE_COPY_LIMIT else frozenset(),
                Key=key,
                CopySource={"Bucket": self.bucket.name, "Key": key},
                Metadata=to_metadata(entry),
                MetadataDirective="REPLACE",
                ContentType="application/octet-stream",
            )
        except ZfileError:
            raise
        except Exception:
            await copy_in_parts(self.bucket, key, key, entry)
        return entry

    async def delete_key(self, key: str) -> None:
        """Delete a private object; failures are left for the sweep."""
        with contextlib.suppress(ZfileError):
            await self.bucket.call("drop an upload's object", "delete_object", Key=key)

    # -- the catalog -----------------------------------------------------------

    async def _head(self, name: str) -> tuple[Entry, str] | None:
        """(entry, ETag) of ``name`` from a HeadObject, None when there is no
        such object or it is not one zfile published."""
        try:
            got = await self.bucket.call(
                f"look up {quote_name(name)}", "head_object", passthrough=_MISSING, Key=self.key(name)
            )
        except ZfileError:
            raise
        except Exception:
            return None
        entry = from_metadata(name, got.get("Metadata", {}), got["ContentLength"])
        return None if entry is None else (entry, got["ETag"])

    async def lookup(self, name: str) -> Entry:
        """The entry of ``name``, from a HeadObject (never the cache); BadName or NotFound."""
        self._check_open()
        check_name(name, self.max_name_bytes)
        found = await self._head(name)
        if found is None:
            raise NotFound(f"{quote_name(name)} is not in the store")
        return found[0]

    async def delete(self, name: str) -> Entry:
        """Delete ``name``'s object (DeleteObject) and return the entry it
        had.  A download already under way then fails at its next ranged GET
        (each is conditional on the object's ETag) instead of finishing with
        the old bytes: S3 keeps no deleted object for a reader.  BadName,
        NotFound, StoreError."""
        entry = await self.lookup(name)
        await self.bucket.call(f"delete {quote_name(name)}", "delete_object", Key=self.key(name))
        self._listing.forget(name)
        return entry

    async def delete_many(self, names: Sequence[str]) -> list[Entry | ZfileError]:
        """:meth:`delete` of each name, HEADS_IN_FLIGHT at once; an entry or
        an error per name, in order (Store.delete_many)."""
        slots = asyncio.Semaphore(HEADS_IN_FLIGHT)

        async def one(name: str) -> Entry | ZfileError:
            async with slots:
                try:
                    return await self.delete(name)
                except ZfileError as exc:
                    return exc

        return list(await asyncio.gather(*(one(n) for n in names)))

    async def rename(self, old: str, new: str, *, clobber: bool = False) -> Entry:
        """Copy ``old``'s object to ``new``'s key with its entry
        (:func:`zfile.store.s3.copy.copy_object`), then delete ``old``
        (Store.rename).  Not one step: while the copy runs and until the
        delete, both names are listed, and a crash between leaves both; with
        ``clobber`` off the new name is looked up first, not atomically
        (docs/s3.md, "Renaming")."""
        check_name(new, self.max_name_bytes)
        if old == new:
            raise ZfileError(f"{quote_name(old)} and its new name are the same", code=ErrorCode.BAD_REQUEST)
        entry = await self.lookup(old)
        if not clobber:
            try:
                await self.lookup(new)
            except NotFound:
                pass
            else:
                raise Exists(f"{quote_name(new)} already exists in the store")
        moved = dataclasses.replace(entry, name=new)
        await copy_object(self.bucket, self.key(old), self.key(new), moved)
        await self.bucket.call(f"remove {quote_name(old)} after copying it", "delete_object", Key=self.key(old))
        self._listing.forget(old)
        self._listing.forget(new)
        return moved

    def usage(self) -> StoreUsage:
        """The uploads this daemon holds live (multipart uploads suspended
        by any daemon need a listing, too dear for every scrape; the bytes
        they hold are not counted), and no free-space limit (None)."""
        return StoreUsage(sum(isinstance(u, S3Upload) for u in self._live.values()), 0, None)

    async def open_download(self, name: str) -> S3Download:
        """Open ``name`` for reading; BadName, NotFound, StoreError."""
        self._check_open()
        check_name(name, self.max_name_bytes)
        found = await self._head(name)
        if found is None:
            raise NotFound(f"{quote_name(name)} is not in the store")
        entry, etag = found
        return S3Download(self.bucket, self.key(name), entry, etag)

    async def held(self, names: Sequence[str]) -> dict[str, Held]:
        """What a CHECK compares of those of ``names`` the bucket holds, from listings (Store.held)."""
        return await held_by_listing(self, names)

    async def list(self, prefix: str = "", after: str = "", limit: int = 1000) -> list[Entry]:
        """Up to ``limit`` entries whose names start with ``prefix`` and sort
        after ``after``, in UTF-8 byte order (:meth:`Listing.page
        <zfile.store.s3.listing.Listing.page>`).  BadName for a bad prefix or cursor."""
        self._check_open()
        return await self._listing.page(prefix, after, limit)

    async def sweep_partials(self, now: float | None = None) -> int:
        """Abort the multipart uploads under the prefix that have gone
        unused (no part stored, nor begun) for more than ``partial_ttl``
        seconds before ``now`` (default: the current time) and that no live
        upload of this daemon holds, and delete the state objects as old
        whose upload is gone (:func:`~zfile.store.s3.sweep.sweep`).  Returns
        how many were dropped; StoreError when they cannot be listed."""
        cutoff = (time.time() if now is None else now) - self.partial_ttl
        private = f"{self.prefix}{PRIVATE_DIR}/uploads/"

        def live_keys() -> set[str]:
            return {u.key for u in self._live.values() if isinstance(u, S3Upload)}

        return await sweep(self.bucket, self.prefix, private, cutoff, live_keys)
