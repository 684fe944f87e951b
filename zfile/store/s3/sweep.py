"""The sweep of the S3 backend: multipart uploads nobody came back for, and
the state objects (upload.py) that named them, made by
:meth:`zfile.store.s3.S3Store.sweep_partials`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from zfile.errors import ZfileError
from zfile.store.s3.client import Bucket


async def sweep(bucket: Bucket, prefix: str, private: str, cutoff: float, live_keys: Callable[[], set[str]]) -> int:
    """Abort the multipart uploads under ``prefix`` begun and last given a
    part before ``cutoff`` (seconds since the epoch) whose key is not in
    ``live_keys()`` (asked again just before each abort), then delete the
    state objects under ``private`` older than ``cutoff`` whose upload is
    gone.  Returns how many were dropped; StoreError when they cannot be
    listed.  A failure to drop one is left for the next sweep."""
    swept = 0
    kept: set[str] = set()
    kw: dict[str, Any] = {"Prefix": prefix}
    while True:
        page = await bucket.call("list interrupted uploads", "list_multipart_uploads", **kw)
        for u in page.get("Uploads", []):
            kept.add(u["UploadId"])
            if u["Key"] in live_keys() or u["Initiated"].timestamp() >= cutoff:
                continue
            with contextlib.suppress(ZfileError):
                what = "list interrupted uploads"
                parts = await bucket.call(what, "list_parts", Key=u["Key"], UploadId=u["UploadId"])
                if any(p["LastModified"].timestamp() >= cutoff for p in parts.get("Parts", [])):
                    continue
                if u["Key"] in live_keys():  # begun while the parts were listed
                    continue
                await bucket.call(
                    "drop an interrupted upload", "abort_multipart_upload", Key=u["Key"], UploadId=u["UploadId"]
                )
                kept.discard(u["UploadId"])
                swept += 1
        if not page.get("IsTruncated"):
            break
        kw = {"Prefix": prefix, "KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    listed = await bucket.call("list interrupted uploads", "list_objects_v2", Prefix=private)
    for obj in listed.get("Contents", []):
        if obj["LastModified"].timestamp() >= cutoff:
            continue
        with contextlib.suppress(ZfileError):
            got = await bucket.call("list interrupted uploads", "get_object", Key=obj["Key"])
            try:
                upload_id = (await got["Body"].read()).decode(errors="replace")
            finally:
                got["Body"].close()
            if upload_id not in kept:
                await bucket.call("drop an upload's state", "delete_object", Key=obj["Key"])
                swept += 1
    return swept
