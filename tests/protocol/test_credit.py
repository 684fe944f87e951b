"""Flow control's two decisions: where a sender cuts, when a receiver grants."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zfile.protocol.credit import CreditWindow, grant_step, next_piece

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
