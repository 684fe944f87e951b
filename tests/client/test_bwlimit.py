"""--bwlimit inside the client: every byte of a streamed upload and download
passes the client's token bucket, in pieces no larger than its quantum, at
no more than the rate.  The bucket runs on an injected clock that moves only
when it sleeps, so the test counts bytes per step of that clock and never
waits for wall time."""

from __future__ import annotations

import os

import pytest

from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.client.pacing import TokenBucket

MiB = 1 << 20


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class Recorder(TokenBucket):
    """A bucket that notes (fake time, bytes) for each take."""

    def __init__(self, rate: int) -> None:
        self.clock = FakeClock()
        super().__init__(rate, clock=self.clock, sleep=self.clock.sleep)
        self.takes: list[tuple[float, int]] = []

    async def take(self, n: int) -> None:
        self.takes.append((self.clock.now, n))
        await super().take(n)


def check_paced(bucket: Recorder, size: int, largest: int) -> None:
    assert sum(n for _, n in bucket.takes) == size
    assert max(n for _, n in bucket.takes) <= largest
    sent = 0
    for t, n in bucket.takes:
        sent += n
        # What went by fake time t (this piece included) is within the bucket's allowance.
        assert sent <= bucket.burst + bucket.rate * t + n
    assert bucket.clock.now == pytest.approx((size - bucket.burst) / bucket.rate)


@pytest.mark.slow
async def test_a_streamed_upload_and_download_pass_the_bucket(daemon, tmp_path):
    rate = 2 * MiB
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * MiB + 5))
    async with Client(ClientConfig(daemon.endpoint, bwlimit=rate)) as client:
        client.pacer = up = Recorder(rate)
        await client.put(src, "big.bin")
        check_paced(up, src.stat().st_size, up.quantum)

        client.pacer = down = Recorder(rate)
        got = await client.get("big.bin", tmp_path / "back.bin")
        # A download's pieces are the daemon's chunks, cut by the paced credit window.
        check_paced(down, src.stat().st_size, rate // 4)
    assert got.path.read_bytes() == src.read_bytes()


@pytest.mark.slow
async def test_small_files_pass_the_bucket_whole(daemon, tmp_path):
    files = []
    for k in range(5):
        path = tmp_path / f"s{k}.bin"
        path.write_bytes(os.urandom(1000 * (k + 1)))
        files.append((path, path.name))
    async with Client(ClientConfig(daemon.endpoint, bwlimit=1000)) as client:
        client.pacer = bucket = Recorder(1000)
        results = await client.put_many(files)
        one = await client.put(files[0][0], "again.bin")
    assert all(not isinstance(r, Exception) for r in results) and one.size == 1000
    assert [n for _, n in bucket.takes] == [15_000, 1000]  # one message, then one inline put
