"""Batched downloads of small files (GET-MANY): the client writes each file
through a temp file, verified, fsynced and renamed, on its own."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import blake3
import pytest

from zfile.client.client import Client, Result
from zfile.client.config import ClientConfig
from zfile.client.partfiles import part_paths
from zfile.client.smallget import write_wholes
from zfile.errors import ErrorCode, IntegrityError, LocalFileError, RemoteError
from zfile.protocol.events import GotFile

from ..conftest import zfile_cli

MTIME_NS = 1_600_000_000_123_456_789


def got(data: bytes, *, digest: bytes | None = None, algo: str = "blake3", mode: int = 0o640) -> GotFile:
    d = blake3.blake3(data).digest() if digest is None else digest
    return GotFile(size=len(data), mtime_ns=MTIME_NS, mode=mode, algo=algo, digest=d, data=data)


def job(f: GotFile, dest: Path) -> tuple[GotFile, Path, Path, Path]:
    return (f, dest, *part_paths(dest))


def test_each_file_is_verified_written_and_renamed_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    good, empty = out / "a" / "good.txt", out / "b" / "empty"
    liar, unknown = out / "a" / "liar.txt", out / "a" / "unknown.txt"
    blocked = out / "file" / "below"
    out.mkdir()
    (out / "file").write_bytes(b"a file where a directory would go")
    stale_part, stale_state = part_paths(good)
    good.parent.mkdir()
    stale_part.write_bytes(b"left by an interrupted streamed get")
    stale_state.write_text("{}")
    results = write_wholes(
        [
            job(got(b"good bytes"), good),
            job(got(b"lying bytes", digest=blake3.blake3(b"other").digest()), liar),
            job(got(b"x", algo="md5"), unknown),
            job(got(b""), empty),
            job(got(b"nowhere to go"), blocked),
        ]
    )
    assert results[0] is None and results[3] is None
    assert isinstance(results[1], IntegrityError) and "digest mismatch" in str(results[1])
    assert isinstance(results[2], IntegrityError)
    assert isinstance(results[4], LocalFileError)
    assert good.read_bytes() == b"good bytes" and empty.read_bytes() == b""
    st = good.stat()
    assert (st.st_mode & 0o7777, st.st_mtime_ns) == (0o640, MTIME_NS)
    assert not liar.exists() and not unknown.exists()
    leftovers = [p.name for p in out.rglob("*") if ".zfile-part" in p.name]
    assert leftovers == []


def test_a_failed_fsync_fails_its_file_and_leaves_no_final_name(tmp_path: Path, monkeypatch) -> None:
    dests = [tmp_path / f"f{i}" for i in range(3)]
    real_fsync = os.fsync
    calls = []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    results = write_wholes([job(got(f"data {i}".encode()), d) for i, d in enumerate(dests)])
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], LocalFileError) and "Input/output error" in str(results[1])
    assert not dests[1].exists() and not part_paths(dests[1])[0].exists()
    assert dests[2].read_bytes() == b"data 2"


async def store(client: Client, tmp_path: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        src = tmp_path / "src" / name
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(data)
        os.utime(src, ns=(MTIME_NS, MTIME_NS))
        await client.put(src, name)


@pytest.mark.slow
async def test_get_many_falls_back_to_get_for_a_file_that_does_not_fit(daemon, tmp_path: Path) -> None:
    files = {"t/small": b"small", "t/big": os.urandom(20_000)}
    out = tmp_path / "out"
    async with Client(ClientConfig(daemon.endpoint, many_bytes=4096)) as client:
        await store(client, tmp_path, files)
        results = await client.get_many([("t/small", out / "small"), ("t/gone", out / "gone"), ("t/big", out / "big")])
    assert isinstance(results[0], Result) and results[0].path == out / "small"
    assert isinstance(results[1], RemoteError) and results[1].code is ErrorCode.NOT_FOUND
    assert isinstance(results[2], Result) and results[2].size == 20_000  # streamed on its own
    assert (out / "small").read_bytes() == b"small" and (out / "big").read_bytes() == files["t/big"]
    assert not (out / "gone").exists()
    assert (out / "small").stat().st_mtime_ns == MTIME_NS


@pytest.mark.slow
def test_cli_get_of_a_tree_batches_small_files_and_streams_large(daemon, tmp_path: Path) -> None:
    files = {f"tree/d{i % 7}/f{i:04d}": os.urandom(i % 5000) for i in range(600)}
    files["tree/large.bin"] = os.urandom(3 << 20)

    async def put() -> None:
        async with Client(daemon.endpoint) as client:
            await store(client, tmp_path, files)

    asyncio.run(put())
    res = zfile_cli("get", "tree/", "--from", daemon.endpoint, "-o", str(tmp_path / "out"))
    assert "601 file(s)" in res.stderr + res.stdout, res.stderr
    for name, data in files.items():
        path = tmp_path / "out" / name
        assert path.read_bytes() == data, name
        assert path.stat().st_mtime_ns == MTIME_NS
    assert [p for p in (tmp_path / "out").rglob("*") if ".zfile-part" in p.name] == []
    log = daemon.log_text()
    assert "result=ok 256 of 256" in log  # whole batches, not one GET per file
    assert log.count("dir=out") < 20


def test_a_file_where_a_directory_must_go_is_named_and_the_others_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "t").write_text("mine")
    files = [job(got(b"a"), out / "t" / "a"), job(got(b"b"), out / "t" / "sub" / "b"), job(got(b"c"), out / "c")]
    results = write_wholes(files)
    for bad in results[:2]:
        assert isinstance(bad, LocalFileError)
        assert str(bad).endswith(f": {out / 't'} is not a directory"), str(bad)
    assert results[2] is None
    assert (out / "t").read_text() == "mine" and (out / "c").read_bytes() == b"c"
