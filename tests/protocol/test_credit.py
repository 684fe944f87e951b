"""Flow control's two decisions: where a sender cuts, when a receiver grants."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zfile.protocol.credit import CreditWindow, grant_step, next_piece, relayed, replay_floor, resumed_window

MiB = 1 << 20


def test_grant_step_is_a_quarter_window_within_chunk_and_window():
    assert grant_step(8 * MiB, MiB) == 2 * MiB
    assert grant_step(2 * MiB, MiB) == MiB  # never under a chunk
    assert grant_step(MiB // 2, MiB) == MiB // 2  # never over the window


def test_next_piece_cuts_at_the_credit_edge():
    assert next_piece(0, 100) == 0
    assert next_piece(40, 100) == 40
    assert next_piece(400, 100) == 100
    with pytest.raises(ValueError):
        next_piece(-1, 10)


def test_window_grants_in_steps_and_the_tail_at_once():
    w = CreditWindow(0, 10 * MiB, 4 * MiB, MiB)
    assert w.initial == 4 * MiB
    assert w.grant(MiB // 2) == 0  # under a step: wait
    assert w.grant(MiB) == MiB  # one step (a quarter of 4 MiB is one chunk)
    assert w.granted_end == 5 * MiB
    assert w.grant(MiB) == 0  # nothing new consumed
    assert w.grant(6 * MiB + 10) == 10 * MiB - 5 * MiB  # capped at the size
    assert w.grant(10 * MiB) == 0


def test_window_smaller_than_the_file_start_offset():
    w = CreditWindow(9 * MiB, 10 * MiB, 8 * MiB, MiB)
    assert w.initial == MiB  # never past the size
    assert w.grant(10 * MiB) == 0


def test_unknown_size_then_announced():
    w = CreditWindow(0, None, 2 * MiB, MiB)
    assert w.initial == 2 * MiB
    w.set_size(MiB * 5 // 2)
    assert w.grant(MiB // 4) == 0  # a quarter MiB more is under a step
    assert w.grant(MiB // 2) == MiB // 2  # the last grant reaches the end: sent although small


def test_shrunk_window_delays_grants_only():
    w = CreditWindow(0, 100 * MiB, 8 * MiB, MiB)
    assert w.grant(2 * MiB, window=MiB) == 0  # already granted past 2+1 MiB
    assert w.grant(8 * MiB, window=MiB) == MiB


@settings(deadline=None)
@given(
    size=st.integers(1, 1 << 14),
    window=st.integers(1, 1 << 14),
    chunk=st.integers(1, 1 << 12),
    steps=st.lists(st.integers(1, 1 << 13), min_size=1, max_size=20),
)
def test_a_sender_under_the_window_always_finishes(size, window, chunk, steps):
    """Sender and receiver driven by these decisions alone never deadlock,
    never send past the credit, and end exactly at the size."""
    w = CreditWindow(0, size, window, chunk)
    credit = w.initial
    sent = 0
    it = itertools.cycle(steps)
    while sent < size:
        n = next_piece(credit, min(next(it), size - sent))
        assert n > 0, "sender starved: no credit and no grant due"
        credit -= n
        sent += n
        assert credit >= 0
        credit += w.grant(sent)
        assert w.granted_end <= size
    assert sent == size == w.granted_end


@settings(deadline=None)
@given(
    size=st.integers(1, 1 << 14),
    window=st.integers(1, 1 << 14),
    chunk=st.integers(1, 1 << 12),
    consumed=st.lists(st.integers(0, 1 << 14), min_size=1, max_size=10),
)
def test_due_at_is_the_least_offset_that_grants(size, window, chunk, consumed):
    """A receiver that waits until due_at() never waits past a grant, nor
    wakes before one; None once the whole size is granted."""
    w = CreditWindow(0, size, window, chunk)
    at = 0
    for more in consumed:
        at = min(size, at + more)
        due = w.due_at()
        if due is None:
            assert w.granted_end == size and w.grant(at) == 0
            continue
        for offset, grants in ((max(0, due), True), (due - 1, False)):
            if offset < 0:
                continue
            probe = CreditWindow(0, size, window, chunk)
            probe.granted_end = w.granted_end
            assert (probe.grant(offset) > 0) is grants
        w.grant(at)


# -- chains: a hop grants for bytes both written and handed on -----------------


def test_relayed_is_what_is_both_written_and_handed_on():
    assert relayed(5 * MiB, 3 * MiB) == 3 * MiB
    assert relayed(2 * MiB, 7 * MiB) == 2 * MiB
    with pytest.raises(ValueError):
        relayed(-1, 0)


def test_replay_floor_keeps_two_windows_below_the_successors_grants():
    assert replay_floor(40 * MiB, 8 * MiB) == 24 * MiB
    assert replay_floor(10 * MiB, 8 * MiB) == 0


def test_a_resumed_window_stays_within_one_window_of_what_is_consumed():
    w = resumed_window(consumed=10 * MiB, received=13 * MiB, size=100 * MiB, window=8 * MiB, chunk=MiB)
    assert w.initial == 5 * MiB  # 8 MiB ahead of 10, less the 3 received and not yet consumed
    full = resumed_window(consumed=10 * MiB, received=20 * MiB, size=100 * MiB, window=8 * MiB, chunk=MiB)
    assert full.initial == 0  # more than a window already held: nothing until it is consumed
    assert full.grant(13 * MiB) == 0 and full.grant(14 * MiB) == 2 * MiB
    end = resumed_window(consumed=95 * MiB, received=96 * MiB, size=100 * MiB, window=8 * MiB, chunk=MiB)
    assert end.initial == 4 * MiB  # never past the end
    with pytest.raises(ValueError):
        resumed_window(consumed=5, received=4, size=10, window=8, chunk=1)


class _Hop:
    """One node of a simulated chain: receives, writes ``speed`` bytes a tick, hands on."""

    def __init__(self, size: int, window: int, chunk: int, speed: int) -> None:
        self.credit = CreditWindow(0, size, window, chunk)
        self.speed = speed
        self.received = self.written = self.handed = 0
        self.granted_to_me = 0  # credit this hop holds from its successor
        self.most_held = 0


def _run_chain(size: int, window: int, chunk: int, speeds: list[int]) -> tuple[list[_Hop], int]:
    hops = [_Hop(size, window, chunk, s) for s in speeds]
    source_credit = hops[0].credit.initial
    for up, down in itertools.pairwise(hops):
        up.granted_to_me = down.credit.initial
    sent = ticks = 0
    while any(hop.written < size for hop in hops):
        ticks += 1
        assert ticks < 100_000, "the chain stalled"
        n = min(source_credit, chunk, size - sent)
        sent += n
        source_credit -= n
        hops[0].received += n
        for i, hop in enumerate(hops):
            hop.written = min(hop.received, hop.written + hop.speed)
            if i + 1 < len(hops):
                nxt = hops[i + 1]
                m = min(hop.received - hop.handed, hop.granted_to_me, chunk)
                hop.handed += m
                hop.granted_to_me -= m
                nxt.received += m
            else:
                hop.handed = hop.received
            step = hop.credit.grant(relayed(hop.written, hop.handed))
            if i == 0:
                source_credit += step
            else:
                hops[i - 1].granted_to_me += step
            hop.most_held = max(hop.most_held, hop.received - relayed(hop.written, hop.handed))
    return hops, ticks


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 8), min_size=2, max_size=6))
def test_in_a_chain_memory_per_hop_stays_within_its_window_and_the_slowest_paces_it(speeds):
    chunk, window, size = 4, 16, 400
    hops, ticks = _run_chain(size, window, chunk, speeds)
    for hop in hops:
        assert hop.written == hop.received == size
        assert hop.most_held <= window
    # The chain is as fast as its slowest node, within a fill of the windows, not the sum of them all.
    slowest = min(min(speeds), chunk)
    assert ticks <= size / slowest + len(speeds) * window + 2 * len(speeds)
