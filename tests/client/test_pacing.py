"""The --bwlimit token bucket, against an injected clock: how many bytes it
lets through in each step of time, never the wall time; and the rates
--bwlimit takes."""

from __future__ import annotations

import asyncio

import pytest

from zfile.client.pacing import MIN_QUANTUM, TokenBucket, parse_rate


class FakeClock:
    """A clock that moves only when the bucket sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def run_sender(bucket: TokenBucket, clock: FakeClock, total: int, piece: int) -> list[tuple[float, int]]:
    """Take ``total`` bytes in pieces; the (time, bytes so far) after each."""
    log: list[tuple[float, int]] = []

    async def go() -> None:
        sent = 0
        while sent < total:
            n = bucket.piece(min(piece, total - sent))
            await bucket.take(n)
            sent += n
            log.append((clock.now, sent))

    asyncio.run(go())
    return log


def test_bytes_per_time_step_stay_at_the_rate():
    clock = FakeClock()
    rate = 100_000  # bytes per second
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    log = run_sender(bucket, clock, total=1_000_000, piece=1 << 20)
    # Over any span from the start, at most burst + rate * t bytes went ...
    for t, sent in log:
        assert sent <= bucket.burst + rate * t + 1e-6
    # ... and the whole megabyte took its ten seconds, less the first burst.
    assert log[-1][0] == pytest.approx((1_000_000 - bucket.burst) / rate)
    # Per 0.1 s step, no later step carries more than a step's worth and a piece.
    steps: dict[int, int] = {}
    prev = 0
    for t, sent in log:
        steps[int(t * 10 + 1e-9)] = steps.get(int(t * 10 + 1e-9), 0) + sent - prev
        prev = sent
    # The first step also carries the bucket's initial burst.
    assert steps[0] <= bucket.burst + rate / 10 and bucket.burst == rate / 5
    assert max(v for k, v in steps.items() if k) <= rate / 10 + bucket.quantum
    assert len(steps) >= 99  # bytes went in (nearly) every step: smooth, not bursts


def test_a_large_chunk_is_cut_into_quanta():
    bucket = TokenBucket(1_000_000)
    assert bucket.quantum == 50_000 and bucket.piece(1 << 20) == 50_000 and bucket.piece(10) == 10
    assert TokenBucket(1000).quantum == MIN_QUANTUM


def test_an_idle_bucket_fills_only_to_its_burst():
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=5000, clock=clock, sleep=clock.sleep)
    clock.now = 3600.0  # an hour idle earns no more than the burst

    async def go() -> None:
        await bucket.take(5000)
        assert clock.slept == []
        await bucket.take(1000)
        assert clock.slept == [pytest.approx(1.0)]

    asyncio.run(go())


def test_concurrent_takers_share_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(10_000, burst=0, clock=clock, sleep=clock.sleep)

    done: list[float] = []

    async def one() -> None:
        await bucket.take(10_000)
        done.append(clock.now)

    async def go() -> None:
        await asyncio.gather(*(one() for _ in range(3)))

    asyncio.run(go())
    # Three seconds' worth of bytes: each taker finished a second after the one before.
    assert done == [pytest.approx(1.0), pytest.approx(2.0), pytest.approx(3.0)]


@pytest.mark.parametrize(
    "text, rate",
    [
        ("500K", 500 * 1024),
        ("50M", 50 * 1024**2),
        ("1.5G", int(1.5 * 1024**3)),
        ("1.5g", int(1.5 * 1024**3)),
        ("2MiB", 2 * 1024**2),
        ("10MB/s", 10 * 1024**2),
        ("1234", 1234),
        ("0", None),
    ],
)
def test_rates_are_bytes_per_second_with_binary_suffixes(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "-5M", "5X", "0.1", "M"])
def test_bad_rates_are_refused(text):
    with pytest.raises(ValueError):
        parse_rate(text)
