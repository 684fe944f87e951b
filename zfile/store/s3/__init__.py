"""The S3 backend: :class:`S3Store`, files as objects in an S3-compatible
object store (``s3://BUCKET/PREFIX/``); docs/s3.md says why it is built
this way.  Needs aiobotocore (``pip install 'zfile[s3]'``), imported only
when the store opens."""

from __future__ import annotations

from zfile.store.s3.store import S3Store, parse_location

__all__ = ["S3Store", "parse_location"]
