"""The one place the S3 backend meets aiobotocore: :class:`Bucket` makes the
client, calls the S3 API with retries, and turns botocore's and aiohttp's
exceptions into zfile errors (:func:`s3_error`).

Throttling and transient answers (503 SlowDown, 500, RequestTimeout) and a
dropped connection are retried with exponential backoff and jitter
(tenacity); botocore's own retries are off so that one policy applies.
Credentials come from botocore's usual chain (the ``AWS_*`` variables, a
profile, the shared config and credentials files); they are never logged
nor put in an error message.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from typing import Any

from zfile.errors import NoSpace, StoreError, ZfileError

#: Error codes of the S3 API (and of S3-compatible stores) that mean "try again later".
_TRANSIENT = {
    "SlowDown",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestTimeout",
    "InternalError",
    "500",
    "503",
}
#: ... and those that mean the store is out of room.
_FULL = {"QuotaExceeded", "InsufficientStorage", "XMinioStorageFull", "StorageFull", "507"}
_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "403",
}

#: Tries of one request before a transient failure is given up on, and the
#: longest wait between two (seconds).
ATTEMPTS = 5
MAX_BACKOFF = 2.0


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` ("" for other exceptions)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def _connection_error(exc: BaseException) -> bool:
    from aiohttp import ClientError as AiohttpError
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    return isinstance(exc, BotoConnectionError | HTTPClientError | AiohttpError | ConnectionError | TimeoutError)


def transient(exc: BaseException) -> bool:
    """True for a failure worth retrying: throttling, a 5xx, a dropped connection."""
    return error_code(exc) in _TRANSIENT or _connection_error(exc)


def s3_error(exc: BaseException, what: str, endpoint: str, bucket: str) -> ZfileError:
    """The zfile error for a failed S3 request: NoSpace when the store is
    full, StoreError with a sentence naming the cause otherwise.  ``what``
    says what was being done ("store a/b.txt")."""
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    where = f"the object store at {endpoint}"
    code = error_code(exc)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StoreError(
            f"could not {what}: no S3 credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE, or write ~/.aws/credentials)"
        )
    if code == "NoSuchBucket":
        return StoreError(f"could not {what}: the bucket {bucket!r} does not exist at {where}")
    if code in _CREDENTIALS:
        return StoreError(
            f"could not {what}: {where} refused the credentials ({code}); check AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY or the profile, and the bucket's policy"
        )
    if code in _FULL or code == "EntityTooLarge":
        return NoSpace(f"could not {what}: {where} has no room for it ({code})")
    if code in _TRANSIENT:
        return StoreError(
            f"could not {what}: {where} kept answering {code} (throttled or unavailable) after {ATTEMPTS} tries"
        )
    if _connection_error(exc):
        return StoreError(f"could not {what}: cannot reach {where} ({type(exc).__name__})")
    if code:
        message = getattr(exc, "response", {}).get("Error", {}).get("Message", "")
        return StoreError(f"could not {what}: {where} answered {code}" + (f" ({message})" if message else ""))
    return StoreError(f"could not {what}: {type(exc).__name__}: {exc}")


class BufferBody(io.RawIOBase):
    """A request body reading a buffer in place: a seekable file over
    ``buf`` (bytes-like), for PutObject and UploadPart.

    botocore refuses a memoryview, and aiohttp copies a bytes or bytearray
    body whole before writing it (twice, measured: 10.7 MiB traced for one
    8 MiB part); a file is read in small pieces instead (0.5 MiB traced).
    """

    def __init__(self, buf) -> None:
        super().__init__()
        self._view = memoryview(buf).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = max(0, min(len(b), len(self._view) - self._pos))
        b[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


#: Bodies up to this many bytes are sent as bytes (one copy); larger ones in
#: place (:class:`BufferBody`).  aiohttp reads a file body in its thread
#: pool, a hop to a worker thread for each read and one more for the close:
#: for a 4 KiB PutObject those hops were most of the daemon's time past the
#: direct client's (docs/s3.md, "Where the time goes").
SMALL_BODY = 64 * 1024


def request_body(buf):
    """The request body for ``buf`` (bytes-like): its bytes when it is at
    most :data:`SMALL_BODY` bytes, else a :class:`BufferBody` over it."""
    view = memoryview(buf).cast("B")
    return bytes(view) if view.nbytes <= SMALL_BODY else BufferBody(view)


class Bucket:
    """A bucket at an S3 endpoint (``None``: AWS's own), reached through one
    aiobotocore client made by :meth:`open`.

    :meth:`call` makes one S3 API request (``op`` is the botocore method
    name, e.g. ``"upload_part"``; ``Bucket=`` is filled in) and returns its
    response dict; it raises the ClientError itself for the codes listed in
    ``passthrough`` (the caller's to judge: NoSuchKey, 404, NoSuchUpload,
    PreconditionFailed, InvalidRange) and a zfile error (:func:`s3_error`)
    for every other failure.
    """

    def __init__(self, bucket: str, endpoint: str | None, *, connections: int = 64) -> None:
        self.name = bucket
        self.endpoint_url = endpoint
        self.endpoint = endpoint or "AWS S3"
        self.connections = connections
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()

    async def open(self) -> None:
        """Make the client; StoreError when aiobotocore is missing."""
        try:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session
        except ImportError:
            raise StoreError("the S3 backend needs aiobotocore: pip install 'zfile[s3]'") from None
        config = AioConfig(
            retries={"total_max_attempts": 1},  # tenacity retries (module docstring)
            max_pool_connections=self.connections,
            connect_timeout=5,
            read_timeout=60,
            # zfile checks its own whole-file digest; a CRC of every part would only cost CPU.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"} if self.endpoint_url else {},
        )
        # botocore's DEBUG records hold signed request headers (the access key
        # id, signatures): the daemon's --log-level DEBUG must not reach them.
        for name in ("botocore", "aiobotocore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        session = get_session()
        if region is None and session.get_config_variable("region") is None:
            region = "us-east-1"
        self._client = await self._stack.enter_async_context(
            session.create_client("s3", endpoint_url=self.endpoint_url, region_name=region, config=config)
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await self._stack.aclose()

    @property
    def is_open(self) -> bool:
        return self._client is not None

    async def call(self, what: str, op: str, *, passthrough: frozenset[str] = frozenset(), **kw: Any) -> dict:
        """One request (class docstring); ``what`` names it in errors."""
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

        if self._client is None:
            raise StoreError(f"could not {what}: the store is not open")
        method = getattr(self._client, op)
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(ATTEMPTS),
                wait=wait_exponential_jitter(multiplier=0.1, max=MAX_BACKOFF),
                retry=retry_if_exception(lambda e: transient(e) and error_code(e) not in passthrough),
                reraise=True,
            ):
                with attempt:
                    body = kw.get("Body")
                    if isinstance(body, BufferBody):
                        body.seek(0)  # a retry sends the whole body again
                    return await method(Bucket=self.name, **kw)
        except Exception as exc:
            if error_code(exc) in passthrough:
                raise
            raise s3_error(exc, what, self.endpoint, self.name) from exc
        raise AssertionError("unreachable")  # pragma: no cover
