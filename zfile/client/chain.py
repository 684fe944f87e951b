"""One tree to many daemons as a pipeline ("chain" fan-out).

:func:`send_chain` streams each large file to the first node only, naming
the rest of the chain in its PUT; that node stores each chunk and forwards
it to the next, and so on (:mod:`zfile.server.forward`), so every link
carries the file once and N nodes take about the time of one.  Credit runs
end to end: the slowest node paces the chain.  Each node verifies the
whole-file digest and commits atomically, as for a direct send; the first
node's PUT-OK comes after a CHAIN-RESULT for every node after it.

Failures: a node that fails is reported and skipped by the hop before it,
which links to the node after it.  When the first node itself fails, this
client does the same: it sends to the next node that has no result yet,
with the rest of the chain, and goes on from the byte that node holds.
Nodes that get no result at all (a hop died before reporting them) are
sent to again the same way, so every node ends with a result.

Files of at most ``inline_max`` bytes go "star" (:func:`send_everywhere`):
to every node at once, many to a PUT-MANY; for them the cost per message,
not the link, is what limits, and a chain would add a hop's latency to
each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Sequence

from zfile.client.channel import Channel, Progress, error_code, no_progress
from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.client.fanout import NodeReport, node_label, send_everywhere, tree_digest
from zfile.client.plan import Outcome, UploadPlan
from zfile.client.quickcheck import Compare, remote_entries, same
from zfile.client.stream import send_file
from zfile.errors import IntegrityError, LocalFileError, RemoteError, TransportError, ZfileError
from zfile.fileio.hashing import hash_file_prefix
from zfile.protocol.digest import DEFAULT_ALGO, new_hasher
from zfile.protocol.events import ChainResult, Event, Put, PutEnd, PutOk, PutReady

#: Least seconds the client waits on the first node of a chain: longer than
#: the ZMTP heartbeat timeout (15 s), so that a hop waiting on a paused node
#: further down reports it before this client gives up on the first one.
CHAIN_TIMEOUT = 45.0

#: What became of one node for one file: its digest, or its error.
NodeResult = bytes | ZfileError


def _record(results: dict[str, NodeResult], event: ChainResult) -> None:
    if event.ok and event.digest is not None:
        results[event.endpoint] = event.digest
    else:
        results[event.endpoint] = RemoteError(event.message or "failed", code=error_code(event.code or "internal"))


async def _answer(channel: Channel, results: dict[str, NodeResult]) -> Event:
    """The first node's next answer; CHAIN-RESULTs on the way are recorded."""
    while True:
        event = await channel.next()
        if isinstance(event, ChainResult):
            _record(results, event)
            continue
        return event


async def _put_chain(
    client: Client,
    path: str | os.PathLike[str],
    name: str,
    st: os.stat_result,
    clobber: bool,
    rest: tuple[str, ...],
    results: dict[str, NodeResult],
    progress: Progress,
) -> bytes:
    """Upload one file to ``client``'s node with ``rest`` as the chain after
    it; return the digest the node committed.  CHAIN-RESULTs go in ``results``."""
    async with client.channel() as channel:
        mode = st.st_mode & 0o7777
        await channel.send(Put(channel.id, name, st.st_size, st.st_mtime_ns, mode, DEFAULT_ALGO, clobber, chain=rest))
        ready = await _answer(channel, results)
        assert isinstance(ready, PutReady)
        if ready.offset:
            hasher = await asyncio.to_thread(hash_file_prefix, str(path), ready.offset, DEFAULT_ALGO)
        else:
            hasher = new_hasher(DEFAULT_ALGO)
        fan = 1 + len(rest)  # each byte sent reaches every node of the chain
        await send_file(
            channel,
            path,
            st,
            client.config.chunk_size,
            hasher,
            lambda n: progress(n * fan),
            aside=lambda event: _record(results, event),
        )
        digest = hasher.digest()
        await channel.send(PutEnd(channel.id, digest))
        while not isinstance(ok := await _answer(channel, results), PutOk):
            pass
        if ok.digest != digest:
            raise IntegrityError(f"the daemon stored {name} with another digest")
        return digest


async def chain_file(
    configs: Sequence[ClientConfig],
    path: str | os.PathLike[str],
    name: str,
    *,
    clobber: bool = True,
    progress: Progress = no_progress,
) -> dict[str, NodeResult]:
    """Send the file at ``path`` as ``name`` along the chain ``configs``
    (in that order); return each node's digest or error, by endpoint.
    Never raises a node's error.  ``progress`` is called with the bytes
    this client sends (each reaches every node of the chain)."""
    results: dict[str, NodeResult] = {}
    try:
        st = os.stat(path)
    except OSError as exc:
        error = LocalFileError(f"cannot read {path}: {exc.strerror}")
        return {c.endpoint: error for c in configs}
    remaining = list(configs)
    while remaining:
        head = remaining[0]
        rest = tuple(c.endpoint for c in remaining[1:])
        config = dataclasses.replace(head, timeout=max(head.timeout, CHAIN_TIMEOUT))
        try:
            async with Client(config) as client:
                results[head.endpoint] = await _put_chain(client, path, name, st, clobber, rest, results, progress)
        except LocalFileError as exc:
            return {c.endpoint: results.get(c.endpoint, exc) for c in configs}
        except ZfileError as exc:
            results[head.endpoint] = exc
        remaining = [c for c in remaining if c.endpoint not in results]
    return results


async def send_chain(
    configs: Sequence[ClientConfig],
    plan: UploadPlan,
    *,
    clobber: bool = True,
    compare: Compare = Compare.QUICK,
    progress: Progress = no_progress,
) -> list[NodeReport]:
    """Upload the files of ``plan`` to every node of ``configs``: files over
    ``inline_max`` bytes one at a time along the chain of the nodes that do
    not hold them yet (quick check per node), smaller ones star.

    Returns one :class:`NodeReport` per config, in their order, as
    :func:`send_everywhere` does; never raises a node's error.
    """
    began = time.monotonic()
    inline_max = configs[0].inline_max if configs else 0
    small = [f for f in plan.files if f[2] <= inline_max]
    large = [f for f in plan.files if f[2] > inline_max]
    if small:
        star = await send_everywhere(
            configs, UploadPlan(small, []), clobber=clobber, compare=compare, progress=progress
        )
    else:
        star = [NodeReport(c.endpoint, node_label(c.endpoint)) for c in configs]
    held: dict[str, dict[str, object]] = {c.endpoint: {} for c in configs}
    broken: dict[str, ZfileError] = {}
    if large and compare is not Compare.NONE:
        for config in configs:
            try:
                async with Client(config) as client:
                    held[config.endpoint] = dict(await remote_entries(client, [n for _, n, _ in large]))
            except ZfileError as exc:
                broken[config.endpoint] = exc
    per_node: dict[str, list[tuple[str, NodeResult]]] = {c.endpoint: [] for c in configs}
    unchanged = dict.fromkeys(held, 0)
    for path, name, size in large:
        chain = []
        for config in configs:
            if config.endpoint in broken:
                per_node[config.endpoint].append((name, broken[config.endpoint]))
                continue
            entry = held[config.endpoint].get(name)
            if entry is not None and await asyncio.to_thread(same, path, entry, compare):  # type: ignore[arg-type]
                per_node[config.endpoint].append((name, entry.digest))  # type: ignore[attr-defined]
                unchanged[config.endpoint] += 1
                progress(size)
                continue
            chain.append(config)
        if chain:
            for endpoint, result in (await chain_file(chain, path, name, clobber=clobber, progress=progress)).items():
                per_node[endpoint].append((name, result))
    seconds = time.monotonic() - began
    sizes = {name: size for _, name, size in large}
    reports = []
    for config, star_report in zip(configs, star, strict=True):
        outcomes = per_node[config.endpoint]
        # A node that could not be reached failed as a node, as in star, not file by file.
        lost = next((r for _, r in outcomes if isinstance(r, TransportError)), None)
        failed = tuple(
            Outcome(n, error=r) for n, r in outcomes if isinstance(r, ZfileError) and not isinstance(r, TransportError)
        )
        ok = [(n, DEFAULT_ALGO, r) for n, r in outcomes if isinstance(r, bytes)]
        digest = None
        if not failed and lost is None and star_report.ok:
            if len(plan.files) == 1 and ok:
                digest = ok[0][2]
            elif len(plan.files) == 1:
                digest = star_report.digest
            else:
                digest = _tree(star_report, ok, small)
        reports.append(
            NodeReport(
                config.endpoint,
                node_label(config.endpoint),
                files=star_report.files + len(ok),
                unchanged=star_report.unchanged + unchanged[config.endpoint],
                bytes=star_report.bytes + sum(sizes[n] for n, _, _ in ok),
                seconds=seconds,
                digest=digest,
                error=star_report.error or lost,
                failed=star_report.failed + failed,
            )
        )
    return reports


def _tree(star: NodeReport, ok: list[tuple[str, str, bytes]], small: list[tuple[str, str, int]]) -> bytes | None:
    """The tree digest of all the node's files, when the star part's digests are known."""
    if not small:
        return tree_digest(ok)
    return None if star.digest is None else tree_digest([*ok, ("\0small", DEFAULT_ALGO, star.digest)])


__all__ = ["CHAIN_TIMEOUT", "NodeResult", "chain_file", "send_chain"]
