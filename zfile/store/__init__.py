"""The daemon's store: what the server needs of one, and its backends.

:class:`Store` (:mod:`zfile.store.base`) is the interface the server
depends on, with :class:`UploadHandle`, :class:`StreamHandle`, :class:`DownloadHandle` and
:class:`ChunkStream`; :func:`make_store` builds the backend for a location:
:class:`LocalStore` (:mod:`zfile.store.local`) for a directory,
:class:`~zfile.store.s3.S3Store` (:mod:`zfile.store.s3`) for an
``s3://BUCKET/PREFIX/`` URL.
"""

from __future__ import annotations

from pathlib import Path

from zfile.errors import ConfigError
from zfile.store.base import ChunkStream, DownloadHandle, Store, StoreUsage, StreamHandle, UploadHandle
from zfile.store.litter import Limits
from zfile.store.local import LocalStore


def make_store(
    location: str | Path,
    *,
    max_file_size: int,
    max_name_bytes: int,
    partial_ttl: float,
    partial_limits: Limits | None = None,
    s3_endpoint: str | None = None,
    adopt: bool = False,
) -> Store:
    """The store at ``location``, not yet open (await its ``open``).

    ``s3://BUCKET/PREFIX/`` is an :class:`~zfile.store.s3.S3Store` at
    ``s3_endpoint`` (a URL such as ``http://127.0.0.1:8333``; None: AWS S3),
    anything else a local directory (:class:`LocalStore`).
    ``max_file_size`` and ``max_name_bytes`` are the largest file and the
    longest name (UTF-8) accepted, in bytes; what suspended uploads left is
    dropped after ``partial_ttl`` seconds unused, and in a local store also,
    oldest first, once it exceeds ``partial_limits`` (counts and bytes;
    default :class:`~zfile.store.litter.Limits`).  ``adopt``: a local store
    records, as it opens, the files its catalog does not list
    (:mod:`zfile.store.adopt`); ConfigError for an S3 location, whose
    objects are listed as they are.  A location that cannot be used fails
    in ``open`` (StoreError).
    """
    if isinstance(location, str) and location.startswith("s3://"):
        from zfile.store.s3 import S3Store

        if adopt:
            raise ConfigError(f"adopt is for a local store, not {location}: an object store lists what it holds")

        return S3Store(
            location,
            endpoint=s3_endpoint,
            max_file_size=max_file_size,
            max_name_bytes=max_name_bytes,
            partial_ttl=partial_ttl,
        )
    return LocalStore(
        location,
        max_file_size=max_file_size,
        max_name_bytes=max_name_bytes,
        partial_ttl=partial_ttl,
        partial_limits=partial_limits,
        adopt=adopt,
    )


__all__ = [
    "ChunkStream",
    "DownloadHandle",
    "LocalStore",
    "Store",
    "StoreUsage",
    "StreamHandle",
    "UploadHandle",
    "make_store",
]
