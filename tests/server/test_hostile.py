"""Hostile and broken input against a running daemon over a real socket.

Every case is sent by a raw DEALER (tests/rawpeer.py).  The daemon must
answer with an ERROR carrying a code and a sentence, stay up, write nothing
outside its root, and let other transfers finish unharmed.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from pathlib import Path

import blake3
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zfile.client.client import Client
from zfile.errors import ErrorCode, RemoteError, RemoteProtocolError
from zfile.protocol.codec import decode, encode
from zfile.protocol.events import (
    Cancel,
    Chunk,
    Credit,
    Error,
    Get,
    GetMeta,
    ListRequest,
    Put,
    PutEnd,
    PutFile,
    PutMany,
    PutManyOk,
    PutOk,
    PutReady,
)

from ..conftest import start_daemon
from ..rawpeer import MTIME_NS, MiB, RawPeer, digest_of, make_file, partials, rss_mib, snapshot

BAD = ErrorCode.BAD_REQUEST.value
MAX_FILE = 512 * MiB


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One daemon for the module, its root three levels down so that an
    escape through ``..`` would land inside the snapshot taken around it."""
    top = tmp_path_factory.mktemp("hostile")
    root = top / "a" / "b" / "store"
    root.parent.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZFILE_CONFIG", os.devnull)  # no machine-wide config file
        d = start_daemon(root, top / "daemon.log", "--idle-timeout", "2", "--max-file-size", str(MAX_FILE))
    d.top = top
    yield d
    assert d.stop() == 0, d.log_text()


@pytest.fixture
def peer(hostile):
    with RawPeer(hostile.endpoint) as p:
        yield p


@pytest.fixture
def outside(hostile):
    """Fails the test if anything outside the root changed while it ran."""
    before = snapshot(hostile.top, hostile.root)
    yield
    assert hostile.proc.poll() is None, "the daemon died"
    assert snapshot(hostile.top, hostile.root) == before


def header(**fields) -> bytes:
    return msgpack.packb({"v": 4, **fields})


PUT_FIELDS = dict(t="PUT", name="x.bin", size=10, mtime_ns=MTIME_NS, mode=0o644, algo="blake3")
MANY_FILE = dict(name="x.bin", size=10, mtime_ns=MTIME_NS, mode=0o644, digest=b"d" * 32)


# -- malformed messages --------------------------------------------------------------

MALFORMED = {
    "random-bytes": ([b"\xc1" + os.urandom(40)], -1, BAD),
    "truncated-msgpack": ([header(id=11, **PUT_FIELDS)[:-4]], -1, BAD),
    "non-map-msgpack": ([msgpack.packb([1, "PUT", 12])], -1, BAD),
    "empty-frame": ([b""], -1, BAD),
    "wrong-field-type-name": ([header(**{**PUT_FIELDS, "name": 123}, id=13)], 13, BAD),
    "wrong-field-type-size-string": ([header(**{**PUT_FIELDS, "size": "10"}, id=14)], 14, BAD),
    "wrong-field-type-bool-as-int": ([header(**{**PUT_FIELDS, "size": True}, id=15)], 15, BAD),
    "wrong-field-type-float": ([header(**{**PUT_FIELDS, "mtime_ns": 1.5}, id=16)], 16, BAD),
    "missing-required-field": ([header(t="PUT", id=17, name="x.bin")], 17, BAD),
    "unknown-message-type": ([header(t="HELLO", id=18)], 18, BAD),
    "type-not-a-string": ([header(t=7, id=19)], 19, BAD),
    "other-protocol-version": ([msgpack.packb({"v": 1, "t": "LIST", "id": 20})], 20, "unsupported-version"),
    "no-version": ([msgpack.packb({"t": "LIST", "id": 21})], 21, "unsupported-version"),
    "extra-frame": ([header(t="LIST", id=22), b"surplus"], 22, BAD),
    "chunk-extra-frame": ([header(t="CHUNK", id=23, offset=0), b"a", b"b"], 23, BAD),
    "chunk-missing-frame": ([header(t="CHUNK", id=24, offset=0)], 24, BAD),
    "empty-chunk": ([header(t="CHUNK", id=25, offset=0), b""], 25, BAD),
    "server-message-from-client": ([header(t="PUT-OK", id=26, size=1, digest=b"x" * 32)], 26, BAD),
    "negative-size": ([header(**{**PUT_FIELDS, "size": -1}, id=27)], 27, BAD),
    "negative-offset": ([header(t="GET", id=28, name="x.bin", credit=1, offset=-5)], 28, BAD),
    "zero-credit-get": ([header(t="GET", id=29, name="x.bin", credit=0)], 29, BAD),
    "inline-more-bytes-than-declared": (
        [header(**{**PUT_FIELDS, "size": 5}, id=30, digest=b"d" * 32), b"0123456789"],
        30,
        BAD,
    ),
    "put-many-missing-frame": ([header(t="PUT-MANY", id=31, algo="blake3", files=[MANY_FILE, MANY_FILE])], 31, BAD),
    "put-many-size-lies": ([header(t="PUT-MANY", id=32, algo="blake3", files=[MANY_FILE]), b"0123456789AB"], 32, BAD),
    "put-many-no-files": ([header(t="PUT-MANY", id=33, algo="blake3", files=[])], 33, BAD),
    "put-many-file-not-a-map": ([header(t="PUT-MANY", id=34, algo="blake3", files=["x.bin"]), b""], 34, BAD),
    "put-many-over-byte-limit": (
        [header(t="PUT-MANY", id=35, algo="blake3", files=[{**MANY_FILE, "size": 5 * MiB}]), b"\0" * (5 * MiB)],
        35,
        BAD,
    ),
    "inline-put-over-one-chunk": (
        # Digest and size are right: only the inline size is wrong.
        [
            header(**{**PUT_FIELDS, "size": 2 * MiB}, id=37, digest=blake3.blake3(bytes(2 * MiB)).digest()),
            bytes(2 * MiB),
        ],
        37,
        BAD,
    ),
    "put-many-ok-from-client": ([header(t="PUT-MANY-OK", id=36, results=[{}])], 36, BAD),
    "check-arrays-disagree": ([header(t="CHECK", id=38, algo="blake3", names=["a", "b"], sizes=[1])], 38, BAD),
    "check-size-not-an-int": ([header(t="CHECK", id=39, algo="blake3", names=["a"], sizes=["1"])], 39, BAD),
    "check-no-names": ([header(t="CHECK", id=40, algo="blake3", names=[], sizes=[])], 40, BAD),
    "check-ok-from-client": ([header(t="CHECK-OK", id=41, same=b"")], 41, BAD),
}


@pytest.mark.parametrize("frames,tid,code", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_message_gets_error(hostile, peer, outside, frames, tid, code):
    peer.send(frames)
    peer.expect_error(tid, code)


# -- names ---------------------------------------------------------------------------

HOSTILE_NAMES = {
    "absolute": "/tmp/zfile-hostile-absolute.bin",
    "dotdot": "../../escape.bin",
    "dotdot-inside": "ok/../../../escape.bin",
    "nul": "a\x00b.bin",
    "control-char": "bell\x07.bin",
    "newline": "two\nlines.bin",
    "c1-control-char": "csi\x9b31m.bin",
    "component-over-255-bytes": "d/" + "c" * 256,
    "over-4096-bytes": "n" * 4097,
    "over-wire-limit": "w" * 70_000,
    "private-dir": ".zfile/catalog.db",
    "empty": "",
}


def test_name_over_path_max_names_the_limit(tmp_path, outside):
    """A name within --max-name-bytes whose path under the root would pass
    PATH_MAX is refused bad-request naming the limit, not failed internal."""
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--max-name-bytes", "8192")
    try:
        name = "/".join(["p" * 200] * 21)[:4096]
        digest = blake3.blake3(b"hi").digest()
        with RawPeer(daemon.endpoint) as peer:
            peer.send_event(Put(41, name, 2, MTIME_NS, 0o644, "blake3", data=b"hi", digest=digest))
            assert "PATH_MAX" in peer.expect_error(41, BAD).message
            peer.send_event(Put(42, name, 10 * MiB, MTIME_NS, 0o644, "blake3"))
            assert "PATH_MAX" in peer.expect_error(42, BAD).message
    finally:
        assert daemon.stop() == 0, daemon.log_text()


@pytest.mark.parametrize("name", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_hostile_name_refused(hostile, peer, outside, name):
    # raw header: a name over the wire limit cannot be encoded by zfile's codec
    peer.send([header(**{**PUT_FIELDS, "name": name}, id=40)])
    peer.expect_error(40, BAD)
    peer.send([header(t="GET", id=41, name=name, credit=MiB)])
    peer.expect_error(41, BAD)
    assert not Path("/tmp/zfile-hostile-absolute.bin").exists()


def test_hostile_names_in_a_put_many_are_refused_alone(hostile, peer, outside):
    good = b"good bytes"
    files = [PutFile("many/ok-1.bin", len(good), MTIME_NS, 0o644, blake3.blake3(good).digest(), data=good)]
    # A name over the wire limit makes the whole message malformed (test_malformed_message_gets_error).
    names = [name for key, name in HOSTILE_NAMES.items() if key != "over-wire-limit"]
    files += [PutFile(name, 3, MTIME_NS, 0o644, blake3.blake3(b"bad").digest(), data=b"bad") for name in names]
    files.append(PutFile("many/ok-2.bin", len(good), MTIME_NS, 0o644, blake3.blake3(good).digest(), data=good))
    peer.send_event(PutMany(42, "blake3", tuple(files)))
    reply = peer.expect(42, PutManyOk)
    assert [r.ok for r in reply.results] == [True] + [False] * len(names) + [True]
    assert {r.code for r in reply.results[1:-1]} == {BAD}
    for name in ("ok-1.bin", "ok-2.bin"):
        assert (hostile.root / "many" / name).read_bytes() == good
    assert not Path("/tmp/zfile-hostile-absolute.bin").exists()


def test_symlink_inside_root_pointing_outside(hostile, peer):
    escape = hostile.top / "a" / "elsewhere"
    escape.mkdir(exist_ok=True)
    (escape / "secret.bin").write_bytes(b"not for clients")
    link = hostile.root / "link"
    link.symlink_to(escape)
    try:
        before = snapshot(hostile.top, hostile.root)
        peer.send_event(Put(42, "link/new.bin", 10, MTIME_NS, 0o644, "blake3"))
        peer.expect_error(42, BAD)
        peer.send_event(Get(43, "link/secret.bin", MiB))
        err = peer.expect(43, Error)
        assert err.code in (BAD, "not-found")
        assert snapshot(hostile.top, hostile.root) == before
        assert sorted(p.name for p in escape.iterdir()) == ["secret.bin"]
    finally:
        link.unlink()


# -- sizes, offsets, credit -------------------------------------------------------------


def test_size_over_configured_maximum(hostile, peer, outside):
    peer.send_event(Put(50, "huge.bin", MAX_FILE + 1, MTIME_NS, 0o644, "blake3"))
    peer.expect_error(50, "too-large")


def open_upload(peer: RawPeer, tid: int, name: str, size: int) -> int:
    peer.send_event(Put(tid, name, size, MTIME_NS + tid, 0o644, "blake3"))
    ready = peer.expect(tid, PutReady)
    return ready.credit


def test_more_bytes_than_declared(hostile, peer, outside):
    open_upload(peer, 51, "declared.bin", 300_000)
    peer.send_event(Chunk(51, 0, b"x" * 300_001))
    peer.expect_error(51, BAD)
    assert not (hostile.root / "declared.bin").exists()


def test_offset_gap(hostile, peer, outside):
    open_upload(peer, 52, "gap.bin", 2 * MiB)
    peer.send_event(Chunk(52, 0, b"a" * 1000))
    peer.send_event(Chunk(52, 2000, b"b" * 1000))
    peer.expect_error(52, BAD)


def test_offset_overlap(hostile, peer, outside):
    open_upload(peer, 53, "overlap.bin", 2 * MiB)
    peer.send_event(Chunk(53, 0, b"a" * 1000))
    peer.send_event(Chunk(53, 500, b"b" * 1000))
    peer.expect_error(53, BAD)


def test_chunk_beyond_credit(hostile, peer, outside):
    credit = open_upload(peer, 54, "credit.bin", 32 * MiB)
    assert 0 < credit < 32 * MiB
    peer.send_event(Chunk(54, 0, os.urandom(credit + 1)))
    peer.expect_error(54, BAD)


def test_put_end_before_every_byte(hostile, peer, outside):
    open_upload(peer, 55, "short.bin", 2 * MiB)
    peer.send_event(Chunk(55, 0, b"a" * 1000))
    peer.send_event(PutEnd(55, b"d" * 32))
    peer.expect_error(55, BAD)
    assert not (hostile.root / "short.bin").exists()


def test_chunk_for_unknown_transfer(hostile, peer, outside):
    peer.send_event(Chunk(999, 0, b"stray"))
    peer.expect_error(999, BAD)
    peer.send_event(PutEnd(998, b"d" * 32))
    peer.expect_error(998, BAD)


def test_chunk_for_finished_transfer(hostile, peer, outside):
    data = b"finished"
    peer.send_event(
        Put(56, "fin.bin", len(data), MTIME_NS, 0o644, "blake3", data=data, digest=blake3.blake3(data).digest())
    )
    peer.expect(56, PutOk)
    peer.send_event(Chunk(56, 0, b"more"))
    peer.expect_error(56, BAD)
    assert (hostile.root / "fin.bin").read_bytes() == data


def test_wrong_digest_discards_and_keeps_nothing(hostile, peer, outside):
    data = os.urandom(2 * MiB)
    credit = open_upload(peer, 57, "digest.bin", len(data))
    peer.send_range(57, data, 0, len(data), credit)
    peer.send_event(PutEnd(57, b"\0" * 32))
    peer.expect_error(57, BAD)
    assert not (hostile.root / "digest.bin").exists()


# -- peers that stop -------------------------------------------------------------------


@pytest.mark.slow
def test_client_stops_mid_file(hostile, peer, outside):
    """The idle timeout (2 s here) ends the transfer with an ERROR, frees it,
    and keeps the partial, which a later PUT of the same file resumes."""
    data = os.urandom(3 * MiB)
    before = set(partials(hostile.root))
    credit = open_upload(peer, 60, "stopped.bin", len(data))
    peer.send_range(60, data, 0, MiB, credit)
    err = peer.expect_error(60, BAD, timeout=15)
    assert "idle" in err.message
    new = {t: n for t, n in partials(hostile.root).items() if t not in before}
    assert list(new.values()) == [MiB]
    # resumed where it stopped, finished verified
    # told only once the partial is released: resuming at once is not busy
    peer.send_event(Put(61, "stopped.bin", len(data), MTIME_NS + 60, 0o644, "blake3"))
    ready = peer.expect(61, PutReady)
    assert ready.offset == MiB
    peer.send_range(61, data, MiB, len(data), ready.credit)
    peer.send_event(PutEnd(61, blake3.blake3(data).digest()))
    peer.expect(61, PutOk)
    assert (hostile.root / "stopped.bin").read_bytes() == data


@pytest.mark.slow
async def test_downloader_that_never_reads(hostile, tmp_path, outside):
    """A GET granting 1 TiB of credit, then never reading: the daemon queues
    at most its small per-peer send pipe (not the file), ends the transfer
    after the idle timeout, and serves others meanwhile."""
    big = make_file(tmp_path / "big.bin", 256 * MiB)
    small = make_file(tmp_path / "small.bin", 3 * MiB)
    async with Client(hostile.endpoint) as client:
        await client.put(big, "never-read.bin")
        base = rss_mib(hostile.proc.pid)
        with RawPeer(hostile.endpoint, rcvhwm=1, rcvbuf=4096) as sloth:
            sloth.send_event(Get(70, "never-read.bin", 1 << 40))
            await asyncio.sleep(0.5)
            # another client is served while the sloth sits on its credit
            await client.put(small, "meanwhile.bin")
            got = await client.get("meanwhile.bin", tmp_path / "back" / "meanwhile.bin")
            assert digest_of(got.path) == digest_of(small)
            grown = rss_mib(hostile.proc.pid) - base
            print(f"daemon RSS grew {grown:.1f} MiB for a never-reading downloader of a 256 MiB file")
            assert grown < 96, f"the daemon buffered {grown:.0f} MiB for a peer that does not read"
            for _ in range(100):
                if "read nothing for" in hostile.log_text():
                    break
                await asyncio.sleep(0.1)
            assert "read nothing for" in hostile.log_text()


@pytest.mark.slow
def test_downloader_that_stops_granting(hostile, peer, outside, tmp_path):
    """A GET whose credit runs out and is never renewed: the daemon ends it
    after the idle timeout with an ERROR, and serves the file again after."""
    src = make_file(tmp_path / "g.bin", 6 * MiB)
    asyncio.run(_put(hostile.endpoint, src, "granted.bin"))
    peer.send_event(Get(80, "granted.bin", MiB))
    assert peer.expect(80, GetMeta).size == 6 * MiB
    assert len(peer.expect(80, Chunk).data) == MiB
    err = peer.expect_error(80, BAD, timeout=15)
    assert "idle" in err.message
    asyncio.run(_round_trip(hostile.endpoint, tmp_path))


async def _put(endpoint: str, src: Path, name: str) -> None:
    async with Client(endpoint) as client:
        await client.put(src, name)


# -- the fuzzer ------------------------------------------------------------------------

FIELDS = [
    "id", "name", "size", "mtime_ns", "mode", "algo", "clobber", "digest", "offset", "credit",
    "transfer", "prefix", "after", "limit", "code", "message", "entries", "more",
]  # fmt: skip
TYPES = ["PUT", "PUT-READY", "CHUNK", "CREDIT", "PUT-END", "PUT-OK", "GET", "GET-META", "LIST", "LIST-PAGE", "CANCEL"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.floats(),
    st.text(max_size=12),
    st.binary(max_size=40),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def header_maps(draw) -> dict:
    fields = draw(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), values, max_size=6))
    fields["v"] = draw(st.just(1) | values)
    fields["t"] = draw(st.sampled_from(TYPES) | values)
    if draw(st.booleans()):
        fields["id"] = draw(st.integers(min_value=0, max_value=1000))
    return fields


@st.composite
def mutated_valid(draw) -> list[bytes]:
    """A valid message with one field replaced, dropped or retyped."""
    event = draw(
        st.sampled_from(
            [
                Put(500, "fuzz.bin", 10, MTIME_NS, 0o644, "blake3"),
                Put(501, "fuzz-inline.bin", 3, MTIME_NS, 0o644, "blake3", data=b"abc", digest=b"d" * 32),
                Chunk(502, 0, b"data"),
                Credit(503, 4096),
                PutEnd(504, b"d" * 32),
                Get(505, "fuzz.bin", MiB),
                ListRequest(506, "", "", 10),
                Cancel(507),
            ]
        )
    )
    frames = [bytes(f) for f in encode(event)]
    head = msgpack.unpackb(frames[0])
    key = draw(st.sampled_from(sorted(head)))
    if draw(st.booleans()):
        del head[key]
    else:
        head[key] = draw(values)
    frames[0] = msgpack.packb(head)
    extra = draw(st.lists(st.binary(max_size=20), max_size=2)) if draw(st.integers(0, 3)) == 0 else []
    return frames[: draw(st.integers(1, len(frames)))] + extra


messages = st.one_of(
    st.lists(st.binary(max_size=64), min_size=1, max_size=3),
    header_maps().map(lambda h: [msgpack.packb(h)]),
    st.tuples(header_maps(), st.lists(st.binary(max_size=64), min_size=1, max_size=2)).map(
        lambda t: [msgpack.packb(t[0]), *t[1]]
    ),
    header_maps().flatmap(
        lambda h: st.integers(0, max(len(msgpack.packb(h)) - 1, 0)).map(lambda n: [msgpack.packb(h)[:n]])
    ),
    values.map(lambda v: [msgpack.packb(v)]),
    mutated_valid(),
)


@pytest.mark.slow
def test_fuzz_1000_malformed_messages(hostile, tmp_path, outside, capsys):
    src = make_file(tmp_path / "legit.bin", 24 * MiB)
    stop = threading.Event()
    results: list = []
    out = tmp_path / "back"

    def traffic() -> None:
        async def rounds() -> None:
            want = digest_of(src)
            async with Client(hostile.endpoint) as client:
                i = 0
                while not stop.is_set() or i == 0:
                    name = f"legit/{i}.bin"
                    await client.put(src, name)
                    got = await client.get(name, out / f"{i}.bin")
                    results.append(digest_of(got.path) == want and digest_of(hostile.root / name) == want)
                    i += 1

        try:
            asyncio.run(rounds())
        except BaseException as exc:  # reported below
            results.append(exc)

    worker = threading.Thread(target=traffic)
    worker.start()
    seen: Counter[str] = Counter()
    with RawPeer(hostile.endpoint) as fuzz:

        @settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(frames=messages)
        def case(frames: list[bytes]) -> None:
            seen["cases"] += 1
            try:
                decode(frames)
            except RemoteProtocolError as exc:
                fuzz.send(frames)
                tid = -1 if exc.transfer_id is None else exc.transfer_id
                # Replies to earlier well-formed cases may come first (a late
                # LIST-PAGE, an ERROR of another code for a reused id): every
                # reply must decode, and the refusal must come.
                deadline = time.monotonic() + 10
                while True:
                    reply = fuzz.recv_event(max(deadline - time.monotonic(), 0.001))
                    if isinstance(reply, Error) and reply.id == tid and reply.code == exc.code.value:
                        assert " " in reply.message, reply
                        break
                seen["refused"] += 1
            else:
                fuzz.send(frames)  # well-formed by luck: whatever it asks, the daemon must survive it
                seen["well-formed"] += 1
            assert hostile.proc.poll() is None, "the daemon died"

        try:
            case()
        finally:
            stop.set()
            worker.join(timeout=120)
    with capsys.disabled():
        print(f"\nhostile cases run: {seen['cases']} ({seen['refused']} malformed, {seen['well-formed']} well-formed)")
    assert seen["cases"] >= 1000 and seen["refused"] >= 900
    assert results and all(r is True for r in results), results
    # still answers a normal put and get
    asyncio.run(_round_trip(hostile.endpoint, tmp_path))


async def _round_trip(endpoint: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "after.bin", MiB + 3)
    async with Client(endpoint) as client:
        await client.put(src, "after-fuzz.bin")
        got = await client.get("after-fuzz.bin", tmp_path / "after-back.bin")
    assert got.path.read_bytes() == src.read_bytes()


def test_refusals_leave_the_daemon_serving(hostile, tmp_path):
    """After every refusal above, an ordinary client still gets a clean error
    for a bad name and stores a good file."""

    async def go() -> None:
        async with Client(hostile.endpoint) as client:
            with pytest.raises(RemoteError) as info:
                await client.put(make_file(tmp_path / "x.bin", 10), "../x.bin")
            assert info.value.code is ErrorCode.BAD_REQUEST

    asyncio.run(go())
    asyncio.run(_round_trip(hostile.endpoint, tmp_path))
