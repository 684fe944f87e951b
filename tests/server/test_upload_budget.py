"""Many uploads at once share the daemon's upload buffer: each one's credit
window shrinks with their number, and stays a whole number of chunks, so a
client never has to cut its chunks at the edge of its credit."""

from __future__ import annotations

from pathlib import Path

import pytest

from zfile.protocol.events import Chunk, Credit, PutEnd, PutOk

from ..conftest import start_daemon
from ..rawpeer import MTIME_NS, RawPeer, digest_of, make_file

KiB = 1 << 10
CHUNK = 64 * KiB
WINDOW = 4 * CHUNK
UPLOADS = 24  # more than the 16 windows the buffer holds


@pytest.mark.slow
def test_shrunk_windows_are_whole_chunks_and_every_upload_completes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ZFILE_WINDOW", str(WINDOW))
    monkeypatch.setenv("ZFILE_CHUNK_SIZE", str(CHUNK))
    daemon = start_daemon(tmp_path / "store", tmp_path / "daemon.log")
    try:
        src = make_file(tmp_path / "src.bin", 10 * CHUNK)
        data = src.read_bytes()
        with RawPeer(daemon.endpoint) as peer:
            credits = {}
            for tid in range(1, UPLOADS + 1):
                ready = peer.start_upload(tid, f"f{tid:02d}.bin", data, mtime_ns=MTIME_NS)
                credits[tid] = ready.credit
            # The first uploads got the whole window; once more than 16 ran,
            # 16 windows shared among 24 (170.7 KiB each) came down to 2 chunks.
            assert credits[1] == WINDOW
            assert credits[UPLOADS] == 2 * CHUNK
            grants = list(credits.values())
            # Send every upload to its end, one chunk at a time, round robin,
            # taking each CREDIT as it comes.
            sent = dict.fromkeys(credits, 0)
            while any(sent[t] < len(data) for t in sent):
                for tid in sent:
                    if sent[tid] == len(data):
                        continue
                    while credits[tid] == 0:
                        event = peer.recv_event()
                        assert isinstance(event, Credit), event
                        credits[event.id] += event.credit
                        grants.append(event.credit)
                    n = min(CHUNK, credits[tid], len(data) - sent[tid])
                    assert n == CHUNK  # never a piece of a chunk
                    peer.send_event(Chunk(tid, sent[tid], data[sent[tid] : sent[tid] + n]))
                    sent[tid] += n
                    credits[tid] -= n
            assert all(g % CHUNK == 0 for g in grants), grants
            for tid in sent:
                peer.send_event(PutEnd(tid, digest_of(src)))
            done = set()
            while len(done) < len(sent):
                event = peer.recv_event(timeout=30)
                if isinstance(event, PutOk):
                    assert event.digest == digest_of(src)
                    done.add(event.id)
                else:
                    assert isinstance(event, Credit), event
        for tid in sent:
            assert (daemon.root / f"f{tid:02d}.bin").read_bytes() == data
    finally:
        assert daemon.stop() == 0, daemon.log_text()
