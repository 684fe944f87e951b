"""The file operations' state rules: one request, one answer, counted and
refused by both ends alike (Pair, from test_protocol)."""

from __future__ import annotations

import pytest

from zfile.errors import ErrorCode
from zfile.protocol.machine import (
    Cancel,
    Check,
    CheckOk,
    Chunk,
    Credit,
    Error,
    FileResult,
    Move,
    MoveOk,
    Ping,
    Pong,
    Put,
    PutEnd,
    PutOk,
    PutReady,
    PutStream,
    Remove,
    RemoveOk,
    Role,
    Stat,
    State,
    StatOk,
)

from .ops_cases import ENTRY
from .test_protocol import D1, ID, Pair, pair_after

C, S = Role.CLIENT, Role.SERVER
OK = FileResult(digest=D1)
GONE = FileResult(ErrorCode.NOT_FOUND.value, "'b' is not in the store")


def test_remove_by_names_gets_one_result_per_name():
    p = Pair()
    p.c(Remove(ID, names=("a", "b")))
    assert p.state() is State.OP_WAITING
    p.s(RemoveOk(ID, (), (OK, GONE)))
    assert p.state() is State.DONE
    assert p.client.finished and p.server.finished


def test_remove_by_prefix_names_what_it_found_up_to_the_limit():
    p = Pair()
    p.c(Remove(ID, prefix="d/", after="d/a", limit=2))
    p.s(RemoveOk(ID, ("d/b", "d/c"), (OK, GONE), more=True))
    assert p.state() is State.DONE
    empty = Pair()
    empty.c(Remove(ID, prefix="nothing/"))
    empty.s(RemoveOk(ID, (), ()))
    assert empty.state() is State.DONE


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (Remove(ID), "either names or a prefix"),
        (Remove(ID, names=("a",), prefix="d/"), "either names or a prefix"),
        (Remove(ID, names=("a",), after="a"), "'after' cursor pages a prefix"),
    ],
)
def test_a_remove_that_says_neither_or_both_is_refused(request_, match):
    Pair().refuse(C, request_, match)


@pytest.mark.parametrize(
    ("request_", "answer"),
    [
        (Remove(ID, names=("a", "b")), RemoveOk(ID, (), (OK,))),
        (Remove(ID, names=("a",)), RemoveOk(ID, (), (OK, OK))),
        (Remove(ID, names=("a",)), RemoveOk(ID, ("a",), (OK,))),
        (Remove(ID, prefix="d/", limit=1), RemoveOk(ID, ("d/a", "d/b"), (OK, OK))),
        (Remove(ID, prefix="d/"), RemoveOk(ID, ("d/a",), ())),
    ],
)
def test_an_answer_that_does_not_fit_its_request_is_refused(request_, answer):
    pair_after([(C, request_)]).refuse(S, answer, "REMOVE-OK has")


def test_the_server_may_refuse_a_remove_whole_and_the_client_cancel_it():
    p = pair_after([(C, Remove(ID, prefix="../"))])
    p.s(Error(ID, ErrorCode.BAD_REQUEST.value, "the prefix '../' has a '..' component"))
    assert p.state() is State.FAILED
    q = pair_after([(C, Remove(ID, names=("a",)))])
    q.c(Cancel(ID))
    assert q.state() is State.FAILED


@pytest.mark.parametrize(
    ("request_", "answer"),
    [
        (Move(ID, "a", "b"), MoveOk(ID, ENTRY)),
        (Stat(ID, "a"), StatOk(ID, ENTRY)),
        (Ping(ID), Pong(ID, "0.1.0", 2, 1.5, 0, False)),
    ],
    ids=lambda e: e.TYPE,
)
def test_move_stat_and_ping_are_one_request_and_one_answer(request_, answer):
    p = Pair()
    p.c(request_)
    assert p.state() is State.OP_WAITING
    for other in (MoveOk(ID, ENTRY), StatOk(ID, ENTRY), Pong(ID, "0.1.0", 2, 1.5, 0, False)):
        if other.TYPE != answer.TYPE:  # only the answer to this request
            pair_after([(C, request_)]).refuse(S, other, f"{other.TYPE} answers a")
    p.s(answer)
    assert p.state() is State.DONE
    pair_after([(C, request_), (S, answer)]).refuse(C, request_, "is not allowed while transfer 7 is done")


def test_a_stream_upload_gives_its_size_at_the_end():
    p = Pair()
    p.c(PutStream(ID, "builds/b.tar", 1, 0o644, "blake3"))
    p.s(PutReady(ID, "t", 0, 4))
    p.c(Chunk(ID, 0, b"abcd"))
    p.s(Credit(ID, 4))
    p.c(Chunk(ID, 4, b"ef"))
    p.c(PutEnd(ID, D1, size=6))
    assert p.client.size == 6 and p.state() is State.PUT_CLOSING
    p.s(PutOk(ID, 6, D1))
    assert p.state() is State.DONE


@pytest.mark.parametrize(
    ("end", "match"),
    [(PutEnd(ID, D1), "needs the size"), (PutEnd(ID, D1, size=3), "says 3 bytes, but 2 were sent")],
)
def test_a_stream_end_without_the_right_size_is_refused(end, match):
    steps = [(C, PutStream(ID, "s", 1, 0o644, "blake3")), (S, PutReady(ID, "t", 0, 8)), (C, Chunk(ID, 0, b"ab"))]
    pair_after(steps).refuse(C, end, match)


def test_a_stream_cannot_resume_and_a_sized_put_end_must_agree():
    pair_after([(C, PutStream(ID, "s", 1, 0o644, "blake3"))]).refuse(S, PutReady(ID, "t", 2, 8), "cannot resume")
    sized = [(C, Put(ID, "f", 2, 1, 0o644, "blake3")), (S, PutReady(ID, "t", 0, 8)), (C, Chunk(ID, 0, b"ab"))]
    pair_after(sized).refuse(C, PutEnd(ID, D1, size=3), "PUT-END says 3 bytes, the PUT 2")
    p = pair_after(sized)
    p.c(PutEnd(ID, D1, size=2))
    assert p.state() is State.PUT_CLOSING


def test_a_check_gets_one_verdict_per_name_and_a_digest_per_file_found_the_same():
    p = Pair()
    p.c(Check(ID, "blake3", ("a", "b", "c"), (1, 2, 3), mtimes_ns=(4, 5, 6)))
    assert p.state() is State.OP_WAITING
    p.s(CheckOk(ID, b"\x01\x00\x02", (D1,)))
    assert p.state() is State.DONE
    assert p.client.finished and p.server.finished


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (Check(ID, "blake3", (), ()), "needs names and as many sizes"),
        (Check(ID, "blake3", ("a", "b"), (1,)), "2 names and 1 sizes"),
        (Check(ID, "blake3", ("a",), (1,), mtimes_ns=(1, 2)), "of 1 names has 2 mtimes_ns"),
    ],
)
def test_a_check_whose_arrays_disagree_is_refused(request_, match):
    Pair().refuse(C, request_, match)


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (CheckOk(ID, b""), "0 verdicts for 2 names"),
        (CheckOk(ID, b"\x01", (D1,)), "1 verdicts for 2 names"),
        (CheckOk(ID, b"\x01\x01\x01", (D1,) * 3), "3 verdicts for 2 names"),
        (CheckOk(ID, b"\x01\x01", (D1,)), "1 digests for 2 files found the same"),
        (CheckOk(ID, b"\x00\x02", (D1,)), "1 digests for 0 files found the same"),
    ],
)
def test_a_check_ok_that_does_not_fit_its_check_is_refused(answer, match):
    pair_after([(C, Check(ID, "blake3", ("a", "b"), (1, 2)))]).refuse(S, answer, match)
