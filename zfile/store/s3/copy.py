"""Copying an object to another key inside the bucket, with a new entry as
its metadata: what :meth:`zfile.store.s3.S3Store.rename` does before it
deletes the old key, and writing a new entry onto an object that has one
(``set_entry``) where the store will not do that in one request.  A
CopyObject up to 5 GiB (S3's limit for one), else a multipart upload of
UploadPartCopy parts of 1 GiB, 4 at a time; the bytes never leave the
object store."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from zfile.errors import ZfileError
from zfile.protocol.events import Entry
from zfile.protocol.names import quote_name
from zfile.store.s3.client import Bucket
from zfile.store.s3.meta import to_metadata

#: Most bytes one CopyObject copies (S3's limit), and the part of a larger copy.
ONE_COPY_LIMIT = 5 << 30
COPY_PART_BYTES = 1 << 30


async def copy_object(bucket: Bucket, source: str, key: str, entry: Entry) -> None:
    """Copy the object ``source`` to ``key`` with ``entry`` (``entry.size``
    bytes) as its metadata.  StoreError or NoSpace when the store fails; a
    multipart copy that fails is aborted."""
    what = f"store {quote_name(entry.name)}"
    copy_source = {"Bucket": bucket.name, "Key": source}
    metadata = to_metadata(entry)
    if entry.size <= ONE_COPY_LIMIT:
        await bucket.call(
            what,
            "copy_object",
            Key=key,
            CopySource=copy_source,
            Metadata=metadata,
            MetadataDirective="REPLACE",
            ContentType="application/octet-stream",
        )
        return
    await copy_in_parts(bucket, source, key, entry)


async def copy_in_parts(bucket: Bucket, source: str, key: str, entry: Entry) -> None:
    """Copy the object ``source`` to ``key`` with ``entry`` as its metadata
    in UploadPartCopy parts of :data:`COPY_PART_BYTES`, 4 at a time; a copy
    onto itself too (``source == key``: the source stays until
    CompleteMultipartUpload).  StoreError or NoSpace when the store fails;
    the copy's own multipart upload is then aborted."""
    what = f"store {quote_name(entry.name)}"
    copy_source = {"Bucket": bucket.name, "Key": source}
    created = await bucket.call(
        what, "create_multipart_upload", Key=key, Metadata=to_metadata(entry), ContentType="application/octet-stream"
    )
    upload_id = created["UploadId"]
    step = COPY_PART_BYTES
    slots = asyncio.Semaphore(4)

    async def copy_part(number: int, start: int) -> dict[str, Any]:
        stop = min(entry.size, start + step)
        async with slots:
            got = await bucket.call(
                what,
                "upload_part_copy",
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=copy_source,
                CopySourceRange=f"bytes={start}-{stop - 1}",
            )
        return {"PartNumber": number, "ETag": got["CopyPartResult"]["ETag"]}

    try:
        parts = await asyncio.gather(*(copy_part(n, s) for n, s in enumerate(range(0, entry.size, step), 1)))
        await bucket.call(
            what, "complete_multipart_upload", Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        with contextlib.suppress(ZfileError):
            await bucket.call(what, "abort_multipart_upload", Key=key, UploadId=upload_id)
        raise


__all__ = ["COPY_PART_BYTES", "ONE_COPY_LIMIT", "copy_in_parts", "copy_object"]
