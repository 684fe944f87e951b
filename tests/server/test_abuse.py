"""One peer must not hurt the others: what a single hostile connection can
make the daemon hold or wait for is bounded (issue: message size, slots,
litter).  The hostile side is a raw DEALER (tests/rawpeer.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import blake3
import msgpack
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.protocol import MAX_FRAMES
from zfile.protocol.events import Cancel, Chunk, Credit, Error, Get, GetMeta, Put, PutFile, PutMany, PutManyOk, PutReady
from zfile.server.config import ServerConfig
from zfile.server.server import Server
from zfile.store.partial import transfer_id

from ..conftest import free_port, start_daemon
from ..rawpeer import MTIME_NS, MiB, RawPeer, digest_of, make_file, partials, peak_rss_mib

BAD = "bad-request"


def header(**fields) -> bytes:
    return msgpack.packb({"v": 4, **fields})


@pytest.mark.slow
def test_a_frame_over_the_largest_legal_message_is_never_held(tmp_path: Path) -> None:
    """A 256 MiB frame (the daemon's frame limit is 16 MiB by default)
    costs the daemon no memory: libzmq drops the connection when it reads
    the frame's length, and the daemon serves on."""
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:
        before = peak_rss_mib(daemon.proc.pid)
        with RawPeer(daemon.endpoint) as peer:
            monitor = peer.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            peer.send([header(t="CHUNK", id=1, offset=0), bytes(256 * MiB)])
            # Either the daemon read the frame and answered it, or libzmq cut
            # the connection: wait for whichever comes first.
            poller = zmq.Poller()
            poller.register(peer.sock, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            ready = dict(poller.poll(30_000))
            assert ready, "neither an answer nor a disconnection within 30 s"
            answered = peer.sock in ready
            if monitor in ready:
                assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
            peer.sock.disable_monitor()
            monitor.close(linger=0)
        grown = peak_rss_mib(daemon.proc.pid) - before
        assert not answered, "the daemon read the whole frame"
        assert grown < 64, f"daemon peak RSS grew {grown:.0f} MiB"
        with RawPeer(daemon.endpoint) as other:
            other.send([header(t="LIST", id=2)])
            assert other.recv_event().id == 2
    finally:
        assert daemon.stop() == 0, daemon.log_text()


@pytest.mark.slow
async def test_a_million_frame_message_is_refused_without_stalling_the_daemon(tmp_path: Path) -> None:
    """A message of a million empty frames (a few MB on the wire) is answered
    bad-request naming the frame limit, and the daemon's event loop keeps
    turning while it is read: no other transfer waits seconds for it."""
    server = Server(ServerConfig(bind=f"tcp://127.0.0.1:{free_port()}", root=str(tmp_path / "store")))
    await server.startup()
    try:
        with RawPeer(server.endpoint) as peer:
            # Sent before the measurement starts: the test's own send would
            # hold this process's event loop too.
            peer.send([header(t="PUT-MANY", id=7, algo="blake3", files=[]), *[b""] * 1_000_000])
            # How long the loop stood still, counted in this thread's CPU time:
            # the other callbacks that ran before this one's turn came again.
            # Wall time would count the waits of a loaded machine as well.
            longest = 0.0
            deadline = time.monotonic() + 60
            while not peer.sock.poll(0):
                assert time.monotonic() < deadline, "no answer within 60 s"
                began = time.thread_time()
                await asyncio.sleep(0.01)
                longest = max(longest, time.thread_time() - began)
            err = peer.recv_event()
        assert err.code == BAD, err
        assert f"at most {MAX_FRAMES} frames" in err.message, err
        # Reading a million frames at once held the loop for over 3 s of CPU.
        assert longest < 1.5, f"the daemon's event loop stood still for {longest:.2f} s of CPU"
    finally:
        await server.shutdown()


def _open_uploads(peer: RawPeer, tids: range, who: str) -> dict[int, object]:
    """Open an upload for each id; return what each was answered."""
    for tid in tids:
        peer.send_event(Put(tid, f"{who}/{tid}.bin", MiB, MTIME_NS, 0o644, "blake3"))
    answers: dict[int, object] = {}
    while len(answers) < len(tids):
        event = peer.recv_event()
        if isinstance(event, PutReady | Error):
            answers[event.id] = event
    return answers


@pytest.mark.slow
async def test_one_client_cannot_take_every_slot(tmp_path: Path) -> None:
    """A connection gets at most max_transfers_per_peer transfers at once;
    another client still gets its own, and busy says which limit was met."""
    daemon = start_daemon(
        tmp_path / "store",
        tmp_path / "daemon.log",
        *("--max-transfers", "8", "--max-transfers-per-peer", "3", "--grace-period", "0"),
    )
    try:
        with RawPeer(daemon.endpoint) as greedy, RawPeer(daemon.endpoint) as second:
            answers = await asyncio.to_thread(_open_uploads, greedy, range(1, 9), "greedy")
            assert sorted(tid for tid, a in answers.items() if isinstance(a, PutReady)) == [1, 2, 3]
            refused = [a for a in answers.values() if isinstance(a, Error)]
            assert len(refused) == 5
            assert all(a.code == "busy" and "one client" in a.message for a in refused), refused
            # Honest clients are served at once, with no busy retry to hide a refusal.
            src = make_file(tmp_path / "honest.bin", 2 * MiB)
            async with Client(ClientConfig(daemon.endpoint, busy_retries=0)) as honest:
                assert (await honest.put(src, "honest.bin")).digest == digest_of(src)
            # The daemon is full only when every slot is taken: 3 + 3 + 2.
            answers = await asyncio.to_thread(_open_uploads, second, range(1, 4), "second")
            assert all(isinstance(a, PutReady) for a in answers.values()), answers
            with RawPeer(daemon.endpoint) as third:
                answers = await asyncio.to_thread(_open_uploads, third, range(1, 4), "third")
            ready = [a for a in answers.values() if isinstance(a, PutReady)]
            full = [a for a in answers.values() if isinstance(a, Error)]
            assert len(ready) == 2 and len(full) == 1
            assert full[0].code == "busy" and "8 transfers are running" in full[0].message, full
    finally:
        assert daemon.stop() == 0, daemon.log_text()


@pytest.mark.slow
def test_a_trickling_upload_is_ended_and_keeps_its_partial(tmp_path: Path) -> None:
    """An upload that moves a byte every 0.2 s (so it is never idle) is ended
    after an idle_timeout under min_rate, with an ERROR saying so; its
    partial stays and a later PUT of the same file resumes from it."""
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--idle-timeout", "1", "--min-rate", "1000")
    try:
        with RawPeer(daemon.endpoint) as peer:
            peer.send_event(Put(1, "slow.bin", MiB, MTIME_NS, 0o644, "blake3"))
            assert isinstance(peer.expect(1, PutReady), PutReady)
            peer.send_event(Chunk(1, 0, b"x" * 100))
            offset = 100
            deadline = time.monotonic() + 30
            while not peer.sock.poll(200):
                assert time.monotonic() < deadline, "the trickling upload was never ended"
                peer.send_event(Chunk(1, offset, b"x"))
                offset += 1
            err = peer.recv_event()
            assert isinstance(err, Error) and err.id == 1, err
            assert err.code == BAD and "minimum of 1000 bytes/s" in err.message, err
            assert 100 <= max(partials(daemon.root).values()) <= offset
            peer.send_event(Put(2, "slow.bin", MiB, MTIME_NS, 0o644, "blake3"))
            ready = peer.expect(2, PutReady)
            assert isinstance(ready, PutReady) and ready.offset >= 100
    finally:
        assert daemon.stop() == 0, daemon.log_text()


@pytest.mark.slow
async def test_a_trickling_download_is_ended(tmp_path: Path) -> None:
    """A download granting one byte of credit every 0.2 s is ended likewise."""
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--idle-timeout", "1", "--min-rate", "1000")
    try:
        src = make_file(tmp_path / "big.bin", MiB)
        async with Client(daemon.endpoint) as client:
            await client.put(src, "big.bin")

        def trickle() -> Error:
            with RawPeer(daemon.endpoint) as peer:
                peer.send_event(Get(1, "big.bin", 1))
                assert isinstance(peer.expect(1, GetMeta), GetMeta)
                deadline = time.monotonic() + 30
                while True:
                    assert time.monotonic() < deadline, "the trickling download was never ended"
                    event = peer.recv_event()
                    if isinstance(event, Error):
                        return event
                    assert isinstance(event, Chunk)
                    time.sleep(0.2)
                    peer.send_event(Credit(1, 1))

        err = await asyncio.to_thread(trickle)
        assert err.code == BAD and "minimum of 1000 bytes/s" in err.message, err
    finally:
        assert daemon.stop() == 0, daemon.log_text()


@pytest.mark.slow
def test_put_then_cancel_leaves_bounded_litter(tmp_path: Path) -> None:
    """Rounds of PUT then CANCEL leave at most max_partials_per_peer
    partials, the newest among them."""
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--max-partials-per-peer", "5")
    try:
        with RawPeer(daemon.endpoint) as peer:
            for tid in range(1, 41):
                peer.send_event(Put(tid, f"litter/{tid}.bin", MiB, MTIME_NS, 0o644, "blake3"))
                peer.expect(tid, PutReady)
                peer.send_event(Chunk(tid, 0, b"x" * 10))
                peer.send_event(Cancel(tid))
            deadline = time.monotonic() + 10
            while len(partials(daemon.root)) > 5:
                assert time.monotonic() < deadline, f"{len(partials(daemon.root))} partials left"
                time.sleep(0.05)
            # The newest partial is the one kept for certain.
            assert transfer_id("litter/40.bin", MiB, MTIME_NS) in partials(daemon.root)
        assert "reclaimed" in daemon.log_text()
    finally:
        assert daemon.stop() == 0, daemon.log_text()


@pytest.mark.slow
async def test_a_listing_of_long_names_comes_in_pages_that_fit(tmp_path: Path) -> None:
    """2,000 entries of 2 KiB names (4.6 MB, over the 4 MiB a peer decodes
    in one message) come as pages sized by bytes; the client gets all of
    them, in order, with no page lost to a timeout."""
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:
        stem = "/".join(["n" * 240] * 8)
        names = [f"{stem}/{k:05d}{'m' * 200}" for k in range(2000)]
        digest = blake3.blake3(b"x").digest()
        with RawPeer(daemon.endpoint) as peer:
            for tid, start in enumerate(range(0, len(names), 250), 1):
                files = tuple(PutFile(n, 1, MTIME_NS, 0o644, digest, data=b"x") for n in names[start : start + 250])
                peer.send_event(PutMany(tid, "blake3", files))
                assert all(r.ok for r in peer.expect(tid, PutManyOk).results)
        async with Client(ClientConfig(daemon.endpoint, timeout=5)) as client:
            listed = [e.name async for e in client.list("", page_size=2000)]
        assert listed == names
    finally:
        assert daemon.stop() == 0, daemon.log_text()


@pytest.mark.slow
async def test_silent_uploads_give_up_their_slots_when_every_slot_is_wanted(tmp_path: Path) -> None:
    """Connections, one upload each, that go silent and fill every slot: a
    request that finds no slot ends the stream stalled longest instead of
    being answered busy for an idle timeout; that peer hears why."""
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log", "--max-transfers", "4", "--grace-period", "0")
    silent = [RawPeer(daemon.endpoint) for _ in range(4)]
    try:
        for k, peer in enumerate(silent):
            peer.send_event(Put(1, f"silent/{k}.bin", MiB, MTIME_NS, 0o644, "blake3"))
            assert isinstance(peer.expect(1, PutReady), PutReady)
        src = make_file(tmp_path / "honest.bin", MiB)
        async with Client(daemon.endpoint) as honest:
            assert (await honest.put(src, "honest.bin")).digest == digest_of(src)
        poller = zmq.Poller()
        for peer in silent:
            poller.register(peer.sock, zmq.POLLIN)
        ready = dict(poller.poll(5000))
        ended = [p.recv_event() for p in silent if p.sock in ready]
        assert len(ended) >= 1, "no silent upload was ended"
        assert all(isinstance(e, Error) and "every slot was wanted" in e.message for e in ended), ended
    finally:
        for peer in silent:
            peer.close()
        assert daemon.stop() == 0, daemon.log_text()
