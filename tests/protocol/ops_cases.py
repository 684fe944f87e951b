"""The file operations' messages as cases for tests/protocol/test_protocol.py's
tables (examples, base events, required fields, field kinds, bad and edge
values, strategies, transitions), which merges them into its own."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from zfile.errors import ErrorCode
from zfile.protocol.codec import MAX_MANY_FILES, MAX_REMOVE_PAGE, MAX_WIRE_NAME_BYTES
from zfile.protocol.machine import Event, FileResult, Remove, RemoveOk, Role, State

C, S = Role.CLIENT, Role.SERVER
ID = 7
D1 = bytes(range(32))

EXAMPLES: list[Event] = [
    Remove(ID, names=("a.txt", "photos/été/1.jpg")),
    Remove(ID, prefix="datasets/2025/", after="datasets/2025/b", limit=MAX_REMOVE_PAGE),
    Remove(0, names=("x" * MAX_WIRE_NAME_BYTES,) + ("n",) * (MAX_MANY_FILES - 1)),
    RemoveOk(ID, (), (FileResult(digest=D1), FileResult(ErrorCode.NOT_FOUND.value, "'b' is not in the store"))),
    RemoveOk(ID, ("d/1", "d/2"), (FileResult(digest=D1), FileResult(digest=D1)), more=True),
    RemoveOk(ID, (), ()),
]

BASE: dict[str, Event] = {
    "REMOVE": Remove(ID, prefix="d/", after="d/a", limit=10),
    "REMOVE-OK": RemoveOk(ID, ("d/b",), (FileResult(digest=D1),), True),
}

REQUIRED: dict[str, tuple[str, ...]] = {
    "REMOVE": ("id",),
    "REMOVE-OK": ("id", "results"),
}

KINDS: dict[str, dict[str, str]] = {
    "REMOVE": {"id": "id", "names": "names", "prefix": "name", "after": "name", "limit": "page"},
    "REMOVE-OK": {"id": "id", "names": "page-names", "results": "removed", "more": "bool"},
}

BAD: dict[str, list[Any]] = {
    "names": ["a", {}, 1, [1], [b"a"], ["x" * (MAX_WIRE_NAME_BYTES + 1)], ["a"] * (MAX_MANY_FILES + 1)],
    "page-names": ["a", [None], ["a"] * (MAX_REMOVE_PAGE + 1)],
    "page": ["10", True, 0, MAX_REMOVE_PAGE + 1],
    "removed": [{}, "x", [1], [{"code": 1}], [{"digest": b""}], [{}] * (max(MAX_MANY_FILES, MAX_REMOVE_PAGE) + 1)],
}

EDGES: dict[str, list[Any]] = {
    "names": [[], ["a"], ["n"] * MAX_MANY_FILES],
    "page-names": [[], ["a", "b"]],
    "page": [1, MAX_REMOVE_PAGE],
    "removed": [[], [{}], [{"code": "not-found", "message": "m", "x-future": 1}]],
}

_names = st.text(max_size=40)
_digests = st.none() | st.binary(min_size=1, max_size=64)
_results = st.lists(
    st.builds(FileResult, code=st.text(max_size=16), message=st.text(max_size=100), digest=_digests),
    max_size=4,
).map(tuple)

STRATEGIES: dict[str, st.SearchStrategy[Event]] = {
    "REMOVE": st.builds(
        Remove,
        id=st.integers(0, (1 << 63) - 1),
        names=st.lists(_names, max_size=4).map(tuple),
        prefix=_names,
        after=_names,
        limit=st.integers(1, MAX_REMOVE_PAGE),
    ),
    "REMOVE-OK": st.builds(
        RemoveOk,
        id=st.integers(0, (1 << 63) - 1),
        names=st.lists(_names, max_size=4).map(tuple),
        results=_results,
        more=st.booleans(),
    ),
}

TRANSITIONS: dict[tuple[State, Role, str], State] = {
    (State.IDLE, C, "REMOVE"): State.OP_WAITING,
    (State.OP_WAITING, S, "REMOVE-OK"): State.DONE,
}
OPEN_STATES = [State.OP_WAITING]

_REMOVE = Remove(ID, names=("a",))
_REMOVED = RemoveOk(ID, (), (FileResult(digest=D1),))
STEPS: dict[str, list[tuple[Role, Event]]] = {
    "op-waiting": [(C, _REMOVE)],
    "remove-done": [(C, _REMOVE), (S, _REMOVED)],
}
FINISHED = ["remove-done"]
PROBES: list[Event] = [_REMOVE, _REMOVED]


@st.composite
def event_of_kind(draw: st.DrawFn, kind: str, t: Any) -> Event:
    """A wire-valid file-operation event of ``kind`` for transfer ID, often
    fitting ``t``'s counters (test_both_ends_agree_on_any_sequence)."""
    if kind == "REMOVE":
        return draw(
            st.builds(Remove, st.just(ID), names=st.just(("a", "b")))
            | st.builds(Remove, st.just(ID), prefix=st.just("d/"), limit=st.integers(1, 3))
            | st.builds(Remove, st.just(ID), names=st.just(("a",)), prefix=st.just("d/"))
        )
    assert kind == "REMOVE-OK"
    n = draw(st.just(t.files or t.limit) | st.integers(0, 3))
    names = draw(st.just(()) | st.just(tuple(f"d/{i}" for i in range(n))))
    return RemoveOk(ID, names, tuple(FileResult(digest=D1) for _ in range(n)), draw(st.booleans()))


KINDS_OF_EVENTS = frozenset({"REMOVE", "REMOVE-OK"})
