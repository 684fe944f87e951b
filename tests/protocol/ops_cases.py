"""The file operations' messages as cases for tests/protocol/test_protocol.py's
tables (examples, base events, required fields, field kinds, bad and edge
values, strategies, transitions), which merges them into its own."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from zfile.errors import ErrorCode
from zfile.protocol.codec import MAX_CHECK_FILES, MAX_MANY_FILES, MAX_REMOVE_PAGE, MAX_WIRE_NAME_BYTES
from zfile.protocol.machine import (
    Check,
    CheckOk,
    Entry,
    Event,
    FileResult,
    Move,
    MoveOk,
    Ping,
    Pong,
    PutEnd,
    PutReady,
    PutStream,
    Remove,
    RemoveOk,
    Role,
    Stat,
    State,
    StatOk,
)

C, S = Role.CLIENT, Role.SERVER
ID = 7
D1 = bytes(range(32))
U63 = (1 << 63) - 1
ENTRY = Entry("builds/b.tar", 10, 1_700_000_000_123_456_789, 0o640, "blake3", D1, 1_700_000_001.5, "u-1", "10.0.0.2")
_ENTRY_MAP = {"name": "a", "size": 1, "mtime_ns": 0, "mode": 0o644, "algo": "blake3", "digest": D1, "received": 1.5}

EXAMPLES: list[Event] = [
    Remove(ID, names=("a.txt", "photos/été/1.jpg")),
    Remove(ID, prefix="datasets/2025/", after="datasets/2025/b", limit=MAX_REMOVE_PAGE),
    Remove(0, names=("x" * MAX_WIRE_NAME_BYTES,) + ("n",) * (MAX_MANY_FILES - 1)),
    RemoveOk(ID, (), (FileResult(digest=D1), FileResult(ErrorCode.NOT_FOUND.value, "'b' is not in the store"))),
    RemoveOk(ID, ("d/1", "d/2"), (FileResult(digest=D1), FileResult(digest=D1)), more=True),
    RemoveOk(ID, (), ()),
    Move(ID, "a.txt", "b/été.txt"),
    Move(U63, "x" * MAX_WIRE_NAME_BYTES, "y", clobber=True),
    MoveOk(ID, ENTRY),
    Stat(ID, "logs/app.log"),
    StatOk(ID, ENTRY),
    Ping(ID),
    Pong(ID, "0.1.0", 2, 12.5, 3, True, 1 << 40),
    Pong(0, "", 0, 0.0, 0, False),
    PutStream(ID, "builds/build.tar", 1_700_000_000_123_456_789, 0o644, "blake3"),
    PutStream(U63, "x" * MAX_WIRE_NAME_BYTES, -(1 << 63), 0o7777, "a" * 64, clobber=False),
    PutEnd(ID, D1, size=0),
    PutEnd(ID, D1, size=U63),
    Check(ID, "blake3", ("a.txt", "photos/été/1.jpg"), (0, U63), mtimes_ns=(-(1 << 63), U63)),
    Check(ID, "blake3", ("a",), (5,)),
    Check(U63, "a" * 64, ("x" * MAX_WIRE_NAME_BYTES,), (1,), mtimes_ns=(2,)),
    Check(0, "b", ("n",) * MAX_CHECK_FILES, (4096,) * MAX_CHECK_FILES, mtimes_ns=(0,) * MAX_CHECK_FILES),
    CheckOk(ID, b"\x00\x01\x02", (D1,)),
    CheckOk(ID, b"\x01\x01", (b"", b"\x00" * 64)),
    CheckOk(ID, b"\x01" * MAX_CHECK_FILES, (D1,) * MAX_CHECK_FILES),
    CheckOk(ID, b""),
]

BASE: dict[str, Event] = {
    "REMOVE": Remove(ID, prefix="d/", after="d/a", limit=10),
    "REMOVE-OK": RemoveOk(ID, ("d/b",), (FileResult(digest=D1),), True),
    "MOVE": Move(ID, "a", "b", True),
    "MOVE-OK": MoveOk(ID, ENTRY),
    "STAT": Stat(ID, "a"),
    "STAT-OK": StatOk(ID, ENTRY),
    "PING": Ping(ID),
    "PONG": Pong(ID, "0.1.0", 2, 1.5, 1, False, 1000),
    "PUT-STREAM": PutStream(ID, "f.bin", 5, 0o644, "blake3", False),
    "CHECK": Check(ID, "blake3", ("a", "b/c"), (1, 2), (3, 4)),
    "CHECK-OK": CheckOk(ID, b"\x01\x00", (D1,)),
}

REQUIRED: dict[str, tuple[str, ...]] = {
    "REMOVE": ("id",),
    "REMOVE-OK": ("id", "results"),
    "MOVE": ("id", "name", "to"),
    "MOVE-OK": ("id", "entry"),
    "STAT": ("id", "name"),
    "STAT-OK": ("id", "entry"),
    "PING": ("id",),
    "PONG": ("id", "version", "protocol", "uptime", "transfers", "curve"),
    "PUT-STREAM": ("id", "name", "mtime_ns", "mode", "algo"),
    "CHECK": ("id", "algo", "names", "sizes"),
    "CHECK-OK": ("id", "same"),
}

KINDS: dict[str, dict[str, str]] = {
    "REMOVE": {"id": "id", "names": "names", "prefix": "name", "after": "name", "limit": "page"},
    "REMOVE-OK": {"id": "id", "names": "page-names", "results": "removed", "more": "bool"},
    "MOVE": {"id": "id", "name": "name", "to": "name", "clobber": "bool"},
    "MOVE-OK": {"id": "id", "entry": "entry"},
    "STAT": {"id": "id", "name": "name"},
    "STAT-OK": {"id": "id", "entry": "entry"},
    "PING": {"id": "id"},
    "PONG": {
        "id": "id",
        "version": "short",
        "protocol": "count",
        "uptime": "float",
        "transfers": "count",
        "curve": "bool",
        "free": "count",
    },
    "PUT-STREAM": {"id": "id", "name": "name", "mtime_ns": "mtime", "mode": "mode", "algo": "short", "clobber": "bool"},
    "CHECK": {
        "id": "id",
        "names": "check-names",
        "sizes": "check-sizes",
        "mtimes_ns": "check-mtimes",
        "algo": "short",
    },
    "CHECK-OK": {"id": "id", "same": "verdicts", "digests": "check-digests"},
}
#: The field PUT-END gained for PUT-STREAM (merged into PUT-END's kinds).
PUT_END_KINDS = {"size": "count"}

BAD: dict[str, list[Any]] = {
    "names": ["a", {}, 1, [1], [b"a"], ["x" * (MAX_WIRE_NAME_BYTES + 1)], ["a"] * (MAX_MANY_FILES + 1)],
    "page-names": ["a", [None], ["a"] * (MAX_REMOVE_PAGE + 1)],
    "page": ["10", True, 0, MAX_REMOVE_PAGE + 1],
    "entry": ["x", 1, [], [_ENTRY_MAP], {}, {**_ENTRY_MAP, "size": "1"}, {**_ENTRY_MAP, "digest": b""}],
    "float": ["1", True, b"\x01", [1.0]],
    "removed": [{}, "x", [1], [{"code": 1}], [{"digest": b""}], [{}] * (max(MAX_MANY_FILES, MAX_REMOVE_PAGE) + 1)],
    "check-names": [
        "a",
        [],
        [1],
        [b"a"],
        ["a", None],
        ["x" * (MAX_WIRE_NAME_BYTES + 1)],
        ["a"] * (MAX_CHECK_FILES + 1),
    ],
    "check-sizes": [1, [], [-1], [1.0], [True], ["1"], [U63 + 1], [0] * (MAX_CHECK_FILES + 1)],
    "check-mtimes": [0, [], [U63 + 1], [0.5], [False], [0] * (MAX_CHECK_FILES + 1)],
    "check-digests": [b"x", [b"x" * 65], ["ab"], [1], [None], [D1] * (MAX_CHECK_FILES + 1)],
    "verdicts": ["\x01", [1], b"\x03", b"\x01\xff", b"\x00" * (MAX_CHECK_FILES + 1)],
}

EDGES: dict[str, list[Any]] = {
    "names": [[], ["a"], ["n"] * MAX_MANY_FILES],
    "page-names": [[], ["a", "b"]],
    "page": [1, MAX_REMOVE_PAGE],
    "entry": [_ENTRY_MAP, {**_ENTRY_MAP, "x-future": 1}],
    "float": [0, -1.5, 1e300],
    "removed": [[], [{}], [{"code": "not-found", "message": "m", "x-future": 1}]],
    "check-names": [["a"], ["", "é" * 100], ["x" * MAX_WIRE_NAME_BYTES], ["n"] * MAX_CHECK_FILES],
    "check-sizes": [[0], [U63], [1] * MAX_CHECK_FILES],
    "check-mtimes": [[-(1 << 63)], [U63, 0]],
    "check-digests": [[], [b""], [b"\x00"], [b"x" * 64]],
    "verdicts": [b"", b"\x00\x01\x02", b"\x02" * MAX_CHECK_FILES],
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
    "MOVE": st.builds(Move, id=st.integers(0, U63), name=_names, to=_names, clobber=st.booleans()),
    "MOVE-OK": st.builds(MoveOk, id=st.integers(0, U63), entry=st.just(ENTRY)),
    "STAT": st.builds(Stat, id=st.integers(0, U63), name=_names),
    "STAT-OK": st.builds(StatOk, id=st.integers(0, U63), entry=st.just(ENTRY)),
    "PING": st.builds(Ping, id=st.integers(0, U63)),
    "PONG": st.builds(
        Pong,
        id=st.integers(0, U63),
        version=st.text(max_size=16),
        protocol=st.integers(0, U63),
        uptime=st.floats(allow_nan=False),
        transfers=st.integers(0, U63),
        curve=st.booleans(),
        free=st.none() | st.integers(0, U63),
    ),
    "PUT-STREAM": st.builds(
        PutStream,
        id=st.integers(0, U63),
        name=_names,
        mtime_ns=st.integers(-(1 << 63), U63),
        mode=st.integers(0, 0o7777),
        algo=st.text(max_size=16),
        clobber=st.booleans(),
    ),
}


def _checks(draw: st.DrawFn) -> Check:
    n = draw(st.integers(1, 4))
    names = tuple(draw(st.lists(_names, min_size=n, max_size=n)))
    sizes = tuple(draw(st.lists(st.integers(0, U63), min_size=n, max_size=n)))
    mtimes = draw(st.none() | st.lists(st.integers(-(1 << 63), U63), min_size=n, max_size=n).map(tuple))
    return Check(draw(st.integers(0, U63)), draw(st.text(max_size=16)), names, sizes, mtimes)


def _check_oks(draw: st.DrawFn) -> CheckOk:
    same = bytes(draw(st.lists(st.sampled_from(b"\x00\x01\x02"), max_size=8)))
    n = same.count(1)
    digests = tuple(draw(st.lists(st.binary(max_size=64), min_size=n, max_size=n)))
    return CheckOk(draw(st.integers(0, U63)), same, digests)


STRATEGIES["CHECK"] = st.composite(_checks)()
STRATEGIES["CHECK-OK"] = st.composite(_check_oks)()

TRANSITIONS: dict[tuple[State, Role, str], State] = {
    (State.IDLE, C, "REMOVE"): State.OP_WAITING,
    (State.OP_WAITING, S, "REMOVE-OK"): State.DONE,
    **{(State.IDLE, C, request): State.OP_WAITING for request in ("MOVE", "STAT", "PING", "CHECK")},
    **{(State.OP_WAITING, S, answer): State.DONE for answer in ("MOVE-OK", "STAT-OK", "PONG", "CHECK-OK")},
    (State.IDLE, C, "PUT-STREAM"): State.PUT_OPENING,
}
OPEN_STATES = [State.OP_WAITING]

_REMOVE = Remove(ID, names=("a",))
_REMOVED = RemoveOk(ID, (), (FileResult(digest=D1),))
STEPS: dict[str, list[tuple[Role, Event]]] = {
    "op-waiting": [(C, _REMOVE)],
    "remove-done": [(C, _REMOVE), (S, _REMOVED)],
    "stat-done": [(C, Stat(ID, "a")), (S, StatOk(ID, ENTRY))],
    "check-done": [(C, Check(ID, "blake3", ("a", "b"), (1, 2))), (S, CheckOk(ID, b"\x01\x00", (D1,)))],
    "stream-sending": [(C, PutStream(ID, "s", 1, 0o644, "blake3")), (S, PutReady(ID, "t", 0, 8))],
}
FINISHED = ["remove-done", "stat-done", "check-done"]
PROBES: list[Event] = [_REMOVE, _REMOVED, Move(ID, "a", "b"), MoveOk(ID, ENTRY), Stat(ID, "a"), StatOk(ID, ENTRY)]
PROBES += [Ping(ID), Pong(ID, "0.1.0", 2, 1.0, 0, False), PutStream(ID, "s", 1, 0o644, "blake3")]
PROBES += [Check(ID, "blake3", ("a",), (1,)), CheckOk(ID, b"\x01", (D1,))]


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
    simple = {
        "MOVE": Move(ID, "a", "b"),
        "MOVE-OK": MoveOk(ID, ENTRY),
        "STAT": Stat(ID, "a"),
        "STAT-OK": StatOk(ID, ENTRY),
        "PING": Ping(ID),
        "PONG": Pong(ID, "0.1.0", 2, 1.0, 0, False),
        "PUT-STREAM": PutStream(ID, "s", 1, 0o644, "blake3"),
    }
    if kind in simple:
        return simple[kind]
    if kind == "CHECK":
        n = draw(st.integers(1, 3))
        return Check(ID, "blake3", tuple(f"f{i}" for i in range(n)), (1,) * n, draw(st.none() | st.just((5,) * n)))
    if kind == "CHECK-OK":
        n = draw(st.just(t.files) | st.integers(0, 3))
        return CheckOk(ID, b"\x01" * n, (D1,) * n)
    assert kind == "REMOVE-OK"
    n = draw(st.just(t.files or t.limit) | st.integers(0, 3))
    names = draw(st.just(()) | st.just(tuple(f"d/{i}" for i in range(n))))
    return RemoveOk(ID, names, tuple(FileResult(digest=D1) for _ in range(n)), draw(st.booleans()))


KINDS_OF_EVENTS = frozenset(KINDS)
