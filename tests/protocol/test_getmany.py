"""GET-MANY and GET-MANY-OK: the codec's frame rules and the state machine's
counter rules for a batched download (docs/protocol.md, "GET-MANY")."""

from __future__ import annotations

import msgpack
import pytest

from zfile.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from zfile.protocol import (
    MAX_MANY_BYTES,
    MAX_MANY_FILES,
    GetMany,
    GetManyOk,
    GotFile,
    Role,
    State,
    Transfer,
    decode,
    encode,
)

ID = 7
D1 = b"\x11" * 32


def got(data: bytes) -> GotFile:
    return GotFile(size=len(data), mtime_ns=5, mode=0o644, algo="blake3", digest=D1, data=data)


def reply_frames(files: list[dict], data: list[bytes]) -> list[bytes]:
    return [msgpack.packb({"v": 4, "t": "GET-MANY-OK", "id": ID, "files": files}, use_bin_type=True), *data]


HEAD = {"size": 3, "mtime_ns": 5, "mode": 0o644, "algo": "blake3", "digest": D1}


def test_round_trip_keeps_order_and_data_frames():
    reply = GetManyOk(ID, (got(b"one"), GotFile(ErrorCode.NOT_FOUND.value, "gone"), got(b"")))
    frames = encode(reply)
    assert len(frames) == 4 and frames[1] == b"one" and frames[2] == b"" and frames[3] == b""
    assert decode(frames) == reply
    assert reply.size == 3


def test_a_request_round_trips_and_defaults_most_to_the_limit():
    head = msgpack.packb({"v": 4, "t": "GET-MANY", "id": ID, "names": ["a", "b/c"]}, use_bin_type=True)
    assert decode([head]) == GetMany(ID, ("a", "b/c"), MAX_MANY_BYTES)
    assert decode(encode(GetMany(ID, ("a",), 10))) == GetMany(ID, ("a",), 10)


@pytest.mark.parametrize(
    ("files", "data", "words"),
    [
        ([HEAD], [], "needs 2 frames, got 1"),
        ([HEAD], [b"ab"], "declares 3 bytes but carries 2"),
        ([HEAD], [b"abcd"], "declares 3 bytes but carries 4"),
        ([{k: v for k, v in HEAD.items() if k != "digest"}], [b"abc"], "lacks its algo or digest"),
        ([{**HEAD, "algo": ""}], [b"abc"], "lacks its algo or digest"),
        ([{"code": "not-found", "message": "m"}], [b"x"], "refused but carries data"),
        ([{"code": "not-found", "size": 3}], [b""], "refused but carries data"),
        ([{**HEAD, "size": MAX_MANY_BYTES + 1}], [b"x" * (MAX_MANY_BYTES + 1)], "over"),
    ],
)
def test_a_reply_whose_frames_lie_about_their_files_is_malformed(files, data, words):
    with pytest.raises(RemoteProtocolError) as info:
        decode(reply_frames(files, data))
    assert words in str(info.value) and info.value.transfer_id == ID
    assert info.value.code is ErrorCode.BAD_REQUEST


def test_too_many_names_or_none_are_malformed():
    for names in ([], ["f"] * (MAX_MANY_FILES + 1)):
        head = msgpack.packb({"v": 4, "t": "GET-MANY", "id": ID, "names": names}, use_bin_type=True)
        with pytest.raises(RemoteProtocolError, match="'names'"):
            decode([head])
    assert len(decode(encode(GetMany(ID, ("f",) * MAX_MANY_FILES))).names) == MAX_MANY_FILES


def pair(req: GetMany) -> tuple[Transfer, Transfer]:
    client, server = Transfer(Role.CLIENT, ID), Transfer(Role.SERVER, ID)
    client.send(req)
    server.receive(req)
    return client, server


def test_one_round_trip_ends_both_ends():
    client, server = pair(GetMany(ID, ("a", "b"), 8))
    assert client.state is server.state is State.GET_MANY_WAITING
    reply = GetManyOk(ID, (got(b"abc"), GotFile("not-found", "b is not in the store")))
    server.send(reply)
    client.receive(reply)
    assert client.state is server.state is State.DONE
    assert client.size == 3


def test_a_reply_must_answer_every_name():
    client, _ = pair(GetMany(ID, ("a", "b"), 8))
    with pytest.raises(RemoteProtocolError, match="1 files for 2 names"):
        client.receive(GetManyOk(ID, (got(b"abc"),)))
    assert client.state is State.FAILED


def test_a_reply_over_the_bytes_asked_for_is_refused():
    client, server = pair(GetMany(ID, ("a", "b"), 5))
    reply = GetManyOk(ID, (got(b"abc"), got(b"def")))
    with pytest.raises(LocalProtocolError, match="over the 5 asked for"):
        server.send(reply)
    with pytest.raises(RemoteProtocolError, match="over the 5 asked for"):
        client.receive(reply)


def test_a_file_whose_data_is_not_its_size_is_refused():
    client, _ = pair(GetMany(ID, ("a",), 8))
    liar = GotFile(size=5, mtime_ns=0, mode=0, algo="blake3", digest=D1, data=b"abc")
    with pytest.raises(RemoteProtocolError, match="declares 5 bytes but carries 3"):
        client.receive(GetManyOk(ID, (liar,)))


def test_a_second_reply_or_a_chunk_is_out_of_turn():
    client, server = pair(GetMany(ID, ("a",), 8))
    reply = GetManyOk(ID, (got(b"abc"),))
    server.send(reply)
    client.receive(reply)
    with pytest.raises(RemoteProtocolError, match="not allowed"):
        client.receive(reply)


def test_the_client_may_cancel_and_the_server_refuse_the_whole_request():
    client, server = pair(GetMany(ID, ("a",), 8))
    from zfile.protocol import Cancel, Error

    client.send(Cancel(ID))
    server.receive(Cancel(ID))
    assert client.state is server.state is State.FAILED
    client, server = pair(GetMany(ID, ("a",), 8))
    server.send(Error(ID, "busy", "try again"))
    client.receive(Error(ID, "busy", "try again"))
    assert client.state is State.FAILED
