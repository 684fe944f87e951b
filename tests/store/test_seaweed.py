"""The SeaweedFS fixture itself: S3 answers signed requests on 127.0.0.1 only."""

from __future__ import annotations

import botocore.session
import pytest

from tests.seaweed import BUCKET


@pytest.mark.slow
def test_seaweedfs_answers_s3_on_loopback(s3):
    assert s3.endpoint.startswith("http://127.0.0.1:")
    client = botocore.session.Session().create_client("s3", endpoint_url=s3.endpoint)
    key = s3.location().removeprefix(f"s3://{BUCKET}/") + "probe"
    client.put_object(Bucket=BUCKET, Key=key, Body=b"probe")
    assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"probe"
