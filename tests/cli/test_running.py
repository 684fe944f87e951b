"""A command's coroutine runs to its result, which is never repr'd on the
way out (a report over a large tree is costly to repr)."""

from __future__ import annotations

import asyncio
import signal

import pytest

from zfile.cli.running import run_main


class Counted:
    def __init__(self) -> None:
        self.reprs = 0

    def __repr__(self) -> str:
        self.reprs += 1
        return "Counted()"


async def give(value: object) -> object:
    await asyncio.sleep(0)
    return value


def test_the_result_comes_back_without_a_repr():
    result = Counted()
    assert run_main(give(result)) is result
    assert result.reprs == 0


def test_plain_asyncio_run_reprs_it():
    # What run_main avoids; should a Python release stop doing this, this
    # test says so and run_main's reason is gone.  asyncio.run installs its
    # SIGINT handler (whose restoring reprs the task) only over Python's
    # default one, which an earlier test in this process may have replaced.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = Counted()
        assert asyncio.run(give(result)) is result
    finally:
        signal.signal(signal.SIGINT, before)
    assert result.reprs > 0


def test_an_exception_reaches_the_caller():
    async def fail() -> None:
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        run_main(fail())
