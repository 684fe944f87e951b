"""Chain fan-out (zfile.server.forward, zfile.client.chain) against daemons on
loopback: forwarding, per-node results, re-linking past a node that refuses,
cannot be reached or dies, the forward switch, and CURVE between hops.
tests/cluster/test_chain.py runs it over shaped links with nodes killed and paused."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import blake3
import pytest

from zfile.client.chain import chain_file, send_chain
from zfile.client.config import ClientConfig
from zfile.client.plan import plan_upload
from zfile.errors import ErrorCode, RemoteError
from zfile.transport import curve as auth
from zfile.transport.curve import load_keypair, load_public_key
from zfile.transport.dealer import ClientCurve

from ..conftest import Daemon, free_port, start_daemon, zfile_cli

MiB = 1 << 20


def b3(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


@pytest.fixture
def chain3(tmp_path: Path):
    daemons = [start_daemon(tmp_path / f"store{i}", tmp_path / f"d{i}.log", "--forward") for i in (1, 2, 3)]
    yield daemons
    for d in daemons:
        assert d.stop() == 0, d.log_text()


def _file(tmp_path: Path, size: int, name: str = "big.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.slow
def test_a_chain_stores_the_file_on_every_node_each_forwarding_once(chain3: list[Daemon], tmp_path: Path):
    src = _file(tmp_path, 5 * MiB + 7)
    proc = zfile_cli("send", str(src), "--to", ",".join(d.endpoint for d in chain3), "--json")
    report = json.loads(proc.stdout)
    assert [r["result"] for r in report] == ["ok"] * 3
    assert {r["digest"] for r in report} == {b3(src)}
    for d in chain3:
        assert (d.root / "big.bin").read_bytes() == src.read_bytes()
    # Each daemon stored it once and the first two forwarded it: one transfer line each.
    for d in chain3:
        assert d.log_text().count("name='big.bin'") == 1, d.log_text()


@pytest.mark.slow
def test_a_daemon_without_forward_stores_but_never_forwards_and_star_is_still_there(tmp_path: Path):
    plain = start_daemon(tmp_path / "s1", tmp_path / "d1.log")
    fwd = [start_daemon(tmp_path / f"s{i}", tmp_path / f"d{i}.log", "--forward") for i in (2, 3)]
    nodes = [plain, *fwd]
    try:
        src = _file(tmp_path, 2 * MiB)
        to = ",".join(d.endpoint for d in nodes)
        proc = zfile_cli("send", str(src), "--to", to, "--json")
        assert {r["result"] for r in json.loads(proc.stdout)} == {"ok"}
        for d in nodes:
            assert (d.root / "big.bin").read_bytes() == src.read_bytes()
        # The first node stored it and opened no link: the client sent the rest of the chain itself.
        assert "stored but not forwarded to 2 node(s): forward is off" in plain.log_text()
        assert "taken over" not in fwd[0].log_text()
        star = zfile_cli("send", str(src), "--to", to, "--fanout", "star", "-I", "--json")
        assert {r["result"] for r in json.loads(star.stdout)} == {"ok"}
    finally:
        for d in nodes:
            assert d.stop() == 0, d.log_text()


@pytest.mark.slow
async def test_a_hop_relinks_past_an_unreachable_or_refusing_node(tmp_path: Path):
    small = ["--forward", "--max-file-size", str(1 * MiB)]
    d1 = start_daemon(tmp_path / "s1", tmp_path / "d1.log", "--forward")
    d3 = start_daemon(tmp_path / "s3", tmp_path / "d3.log", *small)  # refuses too-large
    d5 = start_daemon(tmp_path / "s5", tmp_path / "d5.log", "--forward")
    nobody = f"tcp://127.0.0.1:{free_port()}"
    try:
        src = _file(tmp_path, 3 * MiB)
        configs = [ClientConfig(e, timeout=10) for e in (d1.endpoint, nobody, d3.endpoint, d5.endpoint)]
        results = await chain_file(configs, src, "big.bin")
        digest = blake3.blake3(src.read_bytes()).digest()
        assert results[d1.endpoint] == digest and results[d5.endpoint] == digest
        assert isinstance(results[nobody], RemoteError)
        assert isinstance(results[d3.endpoint], RemoteError) and results[d3.endpoint].code is ErrorCode.TOO_LARGE
        assert (d5.root / "big.bin").read_bytes() == src.read_bytes()
        assert f"ok, skipped {nobody}, {d3.endpoint}" in d1.log_text()
    finally:
        for d in (d1, d3, d5):
            assert d.stop() == 0, d.log_text()


@pytest.mark.slow
async def test_a_middle_node_killed_mid_transfer_is_skipped_and_the_next_one_adopted(tmp_path: Path):
    # Loopback is fast: a file large enough that the kill lands mid-stream.
    daemons = [start_daemon(tmp_path / f"s{i}", tmp_path / f"d{i}.log", "--forward") for i in (1, 2, 3)]
    try:
        src = _file(tmp_path, 160 * MiB)
        configs = [ClientConfig(d.endpoint, timeout=10) for d in daemons]

        def kill_when_started() -> None:
            # A thread, not a task: the client's own loop is busy streaming.
            tmp = daemons[1].root / ".zfile" / "tmp"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if sum(p.stat().st_size for p in tmp.glob("*.part")) >= 16 * MiB:
                        break
                except FileNotFoundError:
                    pass  # a partial committed between the listing and its stat
                time.sleep(0.005)
            daemons[1].proc.kill()

        killer = threading.Thread(target=kill_when_started)
        killer.start()
        results = await chain_file(configs, src, "big.bin")
        killer.join()
        digest = blake3.blake3(src.read_bytes()).digest()
        assert results[daemons[0].endpoint] == digest
        assert results[daemons[2].endpoint] == digest
        assert isinstance(results[daemons[1].endpoint], Exception)
        assert (daemons[2].root / "big.bin").read_bytes() == src.read_bytes()
        assert "taken over" in daemons[2].log_text()
        # The killed node keeps its partial for a resume.
        assert list((daemons[1].root / ".zfile" / "tmp").glob("*.part"))
    finally:
        daemons[1].proc.wait()
        for d in (daemons[0], daemons[2]):
            assert d.stop() == 0, d.log_text()


@pytest.mark.slow
async def test_with_curve_each_hop_authenticates_with_its_own_key_pair(tmp_path: Path):
    base = tmp_path / "keys"
    server_public, server_secret = auth.generate_keypair(base / "server", "server")
    client_public, client_secret = auth.generate_keypair(base / "clients", "laptop")
    with_hops = base / "authorized-hops"
    only_client = base / "authorized-client"
    for d in (with_hops, only_client):
        d.mkdir()
        (d / "laptop.key").write_bytes(client_public.read_bytes())
    (with_hops / "server.key").write_bytes(server_public.read_bytes())

    def curve_daemon(i: int, authorized: Path) -> Daemon:
        args = ("--forward", "--secret-key", str(server_secret), "--authorized-keys", str(authorized))
        return start_daemon(tmp_path / f"s{i}", tmp_path / f"d{i}.log", *args)

    d1, d2, d3 = curve_daemon(1, with_hops), curve_daemon(2, only_client), curve_daemon(3, with_hops)
    try:
        src = _file(tmp_path, 2 * MiB)
        curve = ClientCurve(load_public_key(server_public), load_keypair(client_secret))
        configs = [ClientConfig(d.endpoint, timeout=10, curve=curve) for d in (d1, d2, d3)]
        reports = await send_chain(configs, plan_upload([str(src)]))
        by = {r.endpoint: r for r in reports}
        # d2 does not authorize the daemons' key: d1 cannot forward to it and re-links to d3.
        assert by[d1.endpoint].ok and by[d3.endpoint].ok, [r.reason() for r in reports]
        assert not by[d2.endpoint].ok
        assert (d3.root / "big.bin").read_bytes() == src.read_bytes()
        assert not (d2.root / "big.bin").exists()
        # Every node records the client's key as the file's peer, not the hop that forwarded it.
        laptop = load_public_key(client_public).decode()
        for d in (d1, d3):
            listing = json.loads(
                zfile_cli(
                    "ls",
                    "-R",
                    "--from",
                    d.endpoint,
                    "--json",
                    "--server-key",
                    str(server_public),
                    "--client-key",
                    str(client_secret),
                ).stdout
            )
            assert [e["peer"] for e in listing] == [laptop]
    finally:
        for d in (d1, d2, d3):
            assert d.stop() == 0, d.log_text()


@pytest.mark.slow
def test_serve_check_config_shows_forward(tmp_path: Path):
    conf = tmp_path / "z.toml"
    conf.write_text("[server]\nforward = true\n")
    out = zfile_cli("serve", "--config", str(conf), "--check-config").stdout
    assert "forward = true" in out
    assert "forward = false" in zfile_cli("serve", "--check-config").stdout
    assert "forward = true" in zfile_cli("serve", "--forward", "--check-config").stdout


async def test_a_client_cannot_claim_another_origin(daemon: Daemon):
    from zfile.client.client import Client
    from zfile.protocol.events import Chunk, Put, PutEnd, PutOk, PutReady

    data = os.urandom(300_000)
    digest = blake3.blake3(data).digest()
    async with Client(ClientConfig(daemon.endpoint, timeout=10)) as client, client.channel() as ch:
        # Not inline (a chain upload streams), and naming a chain this daemon does not forward.
        put = Put(ch.id, "o.bin", len(data), 0, 0o644, "blake3", chain=("tcp://127.0.0.1:9",), origin="mallory")
        await ch.send(put)
        ready = await ch.next()
        assert isinstance(ready, PutReady) and ready.offset == 0
        await ch.send(Chunk(ch.id, 0, data))
        await ch.send(PutEnd(ch.id, digest))
        while not isinstance(ok := await ch.next(), PutOk):
            pass
        assert ok.digest == digest
        entries = [e async for e in client.list()]
    # A daemon that does not forward trusts no hop: the peer is who connected.
    assert [(e.name, e.peer) for e in entries] == [("o.bin", "127.0.0.1")]
    assert "stored but not forwarded to 1 node(s)" in daemon.log_text()


@pytest.mark.slow
def test_a_tree_fans_out_large_files_by_chain_and_small_ones_star(chain3: list[Daemon], tmp_path: Path):
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    for i in range(2):
        (src / f"big{i}.bin").write_bytes(os.urandom(2 * MiB + i))
    for i in range(5):
        (src / "sub" / f"small{i}.txt").write_bytes(os.urandom(100 * i))
    proc = zfile_cli("send", str(src), "--to", ",".join(d.endpoint for d in chain3), "--json")
    report = json.loads(proc.stdout)
    assert [(r["result"], r["files"]) for r in report] == [("ok", 7)] * 3
    assert len({r["digest"] for r in report}) == 1
    for d in chain3:
        for path in src.rglob("*"):
            if path.is_file():
                assert (d.root / "tree" / path.relative_to(src)).read_bytes() == path.read_bytes()
    # Each large file was stored once on each node, and a second send finds every file unchanged.
    assert chain3[0].log_text().count("dir=in name='tree/big") == 2
    again = json.loads(zfile_cli("send", str(src), "--to", ",".join(d.endpoint for d in chain3), "--json").stdout)
    assert [(r["result"], r["unchanged"]) for r in again] == [("ok", 7)] * 3
