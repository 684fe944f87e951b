"""The S3 backend's error mapping and retries (zfile.store.s3.client), with
a stand-in for the aiobotocore client: the answers a real store gives only
under load or when full (503 SlowDown, 507) on demand."""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

import zfile.store.s3.client as s3client
from zfile.errors import NoSpace, StoreError
from zfile.store.s3.client import SMALL_BODY, Bucket, BufferBody, request_body


def answer(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


class FakeClient:
    """Raises each of ``failures`` in turn, then answers ``{"ok": True}``; counts the calls."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def put_object(self, **kw):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {"ok": True}


@pytest.fixture
def bucket(monkeypatch):
    monkeypatch.setattr(s3client, "MAX_BACKOFF", 0.01)
    b = Bucket("bk", "http://store.example:9000")
    return b


async def test_slow_down_is_retried_with_backoff_until_it_passes(bucket):
    bucket._client = FakeClient(answer("SlowDown", 503), answer("SlowDown", 503), answer("InternalError", 500))
    assert await bucket.call("store x", "put_object", Key="x") == {"ok": True}
    assert bucket._client.calls == 4


async def test_throttling_that_does_not_pass_is_a_store_error_saying_so(bucket):
    bucket._client = FakeClient(*[answer("SlowDown", 503)] * (s3client.ATTEMPTS + 1))
    with pytest.raises(StoreError, match="kept answering SlowDown .*after 5 tries"):
        await bucket.call("store x", "put_object", Key="x")
    assert bucket._client.calls == s3client.ATTEMPTS


@pytest.mark.parametrize(
    "code, status", [("QuotaExceeded", 403), ("InsufficientStorage", 507), ("EntityTooLarge", 400)]
)
async def test_a_full_store_is_no_space(bucket, code, status):
    bucket._client = FakeClient(answer(code, status))
    with pytest.raises(NoSpace, match=f"has no room for it \\({code}\\)"):
        await bucket.call("store x", "put_object", Key="x")
    assert bucket._client.calls == 1  # not retried


async def test_a_lost_connection_is_retried_then_named(bucket):
    lost = EndpointConnectionError(endpoint_url="http://store.example:9000/bk/x")
    bucket._client = FakeClient(*[lost] * s3client.ATTEMPTS)
    with pytest.raises(
        StoreError, match="could not store x: cannot reach the object store at http://store.example:9000"
    ):
        await bucket.call("store x", "put_object", Key="x")
    assert bucket._client.calls == s3client.ATTEMPTS


async def test_answers_the_caller_judges_pass_through_untouched(bucket):
    bucket._client = FakeClient(answer("NoSuchKey", 404))
    with pytest.raises(ClientError):
        await bucket.call("look up x", "put_object", passthrough=frozenset({"NoSuchKey"}), Key="x")
    bucket._client = FakeClient(answer("Weird", 400))
    with pytest.raises(StoreError, match="answered Weird \\(m\\)"):
        await bucket.call("look up x", "put_object", Key="x")


async def test_a_closed_bucket_refuses_calls():
    with pytest.raises(StoreError, match="not open"):
        await Bucket("bk", None).call("store x", "put_object", Key="x")


def test_a_small_body_goes_as_bytes_a_large_one_in_place():
    small = request_body(bytearray(b"abc"))
    assert small == b"abc" and isinstance(small, bytes)
    buf = bytearray(os.urandom(SMALL_BODY + 1))
    large = request_body(buf)
    assert isinstance(large, BufferBody) and large.read() == bytes(buf)
    buf[0] ^= 0xFF  # read in place, not copied
    large.seek(0)
    assert large.read(1) == bytes(buf[:1])
