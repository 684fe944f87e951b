"""Bandwidth limits (``--bwlimit``): a token bucket that paces the bytes a
client sends and receives.

Tokens are bytes; they accrue at ``rate`` bytes per second up to ``burst``
bytes.  Before a piece of data moves, :meth:`TokenBucket.take` spends its
size; when the bucket runs short it goes into debt and the caller sleeps
until the debt is paid back, so over any span of ``t`` seconds at most
``burst + rate * t`` bytes go, and pieces are spread out evenly in between
rather than sent in bursts.  Pieces are kept to at most :attr:`quantum`
bytes (a twentieth of a second's worth, at least 4 KiB) by the loops that
cut chunks, so one large chunk is not a burst either; only after a stall
(an idle spell, a delayed wake-up) may up to ``burst`` bytes go at once.

All the transfers of one client share its bucket: the rate is that of the
client's connection, not of each file.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

KiB = 1024
_UNITS = {"": 1, "K": KiB, "M": KiB**2, "G": KiB**3, "T": KiB**4}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?(?:/S)?\s*", re.IGNORECASE)

#: The smallest piece the bucket asks a sender to cut (bytes).
MIN_QUANTUM = 4 * KiB


def parse_rate(text: str) -> int | None:
    """Bytes per second from a ``--bwlimit`` value: a number of bytes, or one
    with the suffix K, M, G or T (powers of 1024, as rsync's ``--bwlimit``
    takes them; ``1.5G`` is 1610612736), optionally followed by ``B`` or
    ``iB``; case does not matter.  ``0`` means no limit (None), as in rsync.
    Unlike rsync, a number without a suffix is bytes, not KiB.  Raises
    :class:`ValueError` for anything else."""
    m = _RATE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a rate: give bytes per second, such as 500K, 50M or 1.5G (K = 1024)")
    rate = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if rate == 0 and float(m.group(1)) != 0:
        raise ValueError(f"{text!r} is less than one byte per second")
    return rate or None


class TokenBucket:
    """Paces bytes to ``rate`` bytes per second (module docstring).

    ``burst`` is how many bytes may go at once after an idle spell (default:
    a fifth of a second's worth, at least :attr:`quantum`): enough that a
    wake-up the scheduler delays is made up for, not lost, on a busy
    machine.  ``clock`` (seconds, monotonic) and ``sleep`` (an
    awaitable of seconds) are injectable for tests; they default to
    :func:`time.monotonic` and :func:`asyncio.sleep`.  Raises
    :class:`ValueError` for a rate that is not positive.
    """

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"a rate must be positive, not {rate}")
        self.rate = float(rate)
        #: The largest piece a sender should cut at this rate (bytes).
        self.quantum = max(MIN_QUANTUM, int(rate / 20))
        self.burst = max(self.quantum, int(rate / 5)) if burst is None else burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now

    def piece(self, n: int) -> int:
        """How much of ``n`` bytes to move in the next piece: at most :attr:`quantum`."""
        return min(n, self.quantum)

    async def take(self, n: int) -> None:
        """Spend ``n`` bytes; sleep while the bucket is in debt.  Callers that
        share the bucket queue up behind each other's debt."""
        if n <= 0:
            return
        self._refill()
        self._tokens -= n
        if self._tokens < 0:
            await self._sleep(-self._tokens / self.rate)


__all__ = ["KiB", "MIN_QUANTUM", "TokenBucket", "parse_rate"]
