"""One tree to many daemons, or from many daemons, at once ("star" fan-out).

:func:`send_everywhere` uploads the same plan to every node and
:func:`gather` downloads the same names from every node into a directory
per node, each node over its own :class:`~zfile.client.Client`, all nodes
concurrently.  A node that cannot be reached, refuses, or dies mid-transfer
fails alone: its :class:`NodeReport` carries the error and the other nodes
go on.  Each node gets the quick check, resume and verification of a single
``send`` or ``get``.

Every node's bytes leave this machine separately, so the sender's link is
shared N ways: the wall time grows with N.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zfile.client.channel import Progress, no_progress
from zfile.client.client import Client
from zfile.client.config import ClientConfig
from zfile.client.filters import NO_FILTER, Filter
from zfile.client.plan import Outcome, UploadPlan, plan_download
from zfile.client.quickcheck import Compare, remote_entries, same, unchanged_downloads
from zfile.client.tree import fetch, send_paths
from zfile.errors import EndpointError, LocalFileError, ZfileError
from zfile.protocol.digest import DEFAULT_ALGO, new_hasher
from zfile.protocol.events import Entry
from zfile.transport.endpoint import DEFAULT_PORT, parse_endpoint


@dataclass(frozen=True, slots=True)
class NodeReport:
    """What became of one node.

    ``endpoint`` is the node's ZeroMQ endpoint and ``node`` its directory
    name (:func:`node_label`); ``files`` the files of the plan the node now
    holds (or, for :func:`gather`, that were written), ``unchanged`` how many
    of them needed no transfer; ``bytes`` the bytes moved, a failed node's
    too, up to its failure; ``seconds`` the
    node's wall time from connecting to its last file; ``digest`` the
    BLAKE3 digest of the one file of the plan, or for several files the
    :func:`tree_digest` of them all, None unless every file succeeded;
    ``error`` the failure that stopped the node, else None; ``failed`` the
    files that failed one by one.
    """

    endpoint: str
    node: str
    files: int = 0
    unchanged: int = 0
    bytes: int = 0
    seconds: float = 0.0
    digest: bytes | None = None
    error: ZfileError | None = None
    failed: tuple[Outcome, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed

    @property
    def mb_per_s(self) -> float:
        """Bytes moved per second of the node's wall time, in MB/s (10**6 bytes)."""
        return self.bytes / max(self.seconds, 1e-9) / 1e6

    def reason(self) -> str:
        """One sentence saying why the node failed ("" when it did not)."""
        if self.error is not None:
            return str(self.error)
        if self.failed:
            first = self.failed[0]
            more = f" (and {len(self.failed) - 1} more file(s))" if len(self.failed) > 1 else ""
            return f"{first.name}: {first.error}{more}"
        return ""


def read_targets(spec: str) -> list[str]:
    """The endpoints of ``spec``: ``A,B,C`` or ``@FILE`` (one endpoint a line;
    blank lines and ``#`` comments are skipped), each in any form
    :func:`~zfile.transport.endpoint.parse_endpoint` takes.

    Raises :class:`EndpointError` for a bad endpoint, an empty list or one
    naming a node twice, :class:`LocalFileError` when FILE cannot be read.
    """
    if spec.startswith("@"):
        try:
            text = Path(spec[1:]).read_text()
        except OSError as exc:
            raise LocalFileError(f"cannot read the node list {spec[1:]}: {exc.strerror}") from None
        items = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        where = spec[1:]
    else:
        items = [item.strip() for item in spec.split(",")]
        where = "--to/--from"
    endpoints = []
    for item in items:
        if not item:
            continue
        try:
            endpoints.append(parse_endpoint(item))
        except EndpointError as exc:
            raise EndpointError(f"{where}: {exc}") from None
    if not endpoints:
        raise EndpointError(f"{where} names no node")
    labels = [node_label(e) for e in endpoints]
    for label in labels:
        if labels.count(label) > 1:
            raise EndpointError(f"{where} names node {label} twice")
    return endpoints


def node_label(endpoint: str) -> str:
    """A node's directory name for :func:`gather`: the host of a
    ``tcp://HOST:5555`` endpoint, ``HOST_PORT`` for another port, and for
    ``ipc://PATH`` the path with ``/`` as ``_``."""
    if endpoint.startswith("ipc://"):
        return endpoint[len("ipc://") :].strip("/").replace("/", "_") or "ipc"
    host, _, port = endpoint.split("://", 1)[-1].rpartition(":")
    host = host.strip("[]").replace(":", "_")
    return host if port == str(DEFAULT_PORT) else f"{host}_{port}"


def tree_digest(digests: Sequence[tuple[str, str, bytes]]) -> bytes:
    """A BLAKE3 digest of ``(stored name, algo, whole-file digest)`` triples:
    of the lines ``NAME\\0ALGO\\0HEX\\n`` sorted by name, so two nodes holding
    the same files under the same names have the same tree digest."""
    hasher = new_hasher(DEFAULT_ALGO)
    for name, algo, digest in sorted(digests):
        hasher.update(f"{name}\0{algo}\0{digest.hex()}\n".encode())
    return hasher.digest()


class _Counter:
    """A :data:`Progress` that counts one node's bytes and passes them on."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.total = 0

    def __call__(self, n: int) -> None:
        self.total += n
        self.progress(n)


def _digest_of(digests: list[tuple[str, str, bytes]]) -> bytes | None:
    if len(digests) == 1:
        return digests[0][2]
    return tree_digest(digests) if digests else None


async def _send_one(
    config: ClientConfig,
    plan: list[tuple[str, str, int]],
    clobber: bool,
    compare: Compare,
    progress: Progress,
) -> NodeReport:
    began = time.monotonic()
    label = node_label(config.endpoint)
    moved = _Counter(progress)
    sent: list[Outcome] = []
    digests: list[tuple[str, str, bytes]] = []
    unchanged = 0
    try:
        async with Client(config) as client:
            entries: dict[str, Entry] = {}
            if compare is not Compare.NONE and plan:
                entries = await remote_entries(client, [name for _, name, _ in plan])
            skip = await asyncio.to_thread(lambda: [same(path, entries.get(name), compare) for path, name, _ in plan])
            todo = []
            for item, unchanged_here in zip(plan, skip, strict=True):
                if unchanged_here:
                    entry = entries[item[1]]
                    digests.append((entry.name, entry.algo, entry.digest))
                    progress(item[2])
                else:
                    todo.append(item)
            unchanged = len(plan) - len(todo)
            sent = await send_paths(client, [], clobber=clobber, progress=moved, plan=UploadPlan(todo, []))
    except ZfileError as exc:
        return NodeReport(
            config.endpoint,
            label,
            files=unchanged + sum(o.result is not None for o in sent),
            unchanged=unchanged,
            bytes=moved.total,
            seconds=time.monotonic() - began,
            error=exc,
        )
    digests += [(o.result.name, DEFAULT_ALGO, o.result.digest) for o in sent if o.result is not None]
    failed = tuple(o for o in sent if o.error is not None)
    return NodeReport(
        config.endpoint,
        label,
        files=unchanged + len(sent) - len(failed),
        unchanged=unchanged,
        bytes=moved.total,
        seconds=time.monotonic() - began,
        digest=None if failed else _digest_of(digests),
        failed=failed,
    )


async def send_everywhere(
    configs: Sequence[ClientConfig],
    plan: UploadPlan,
    *,
    clobber: bool = True,
    compare: Compare = Compare.QUICK,
    progress: Progress = no_progress,
) -> list[NodeReport]:
    """Upload the files of ``plan`` (from :func:`~zfile.client.plan.plan_upload`;
    what it skipped is the caller's to report) to every node of ``configs``
    at once, one client each.

    Returns one :class:`NodeReport` per config, in their order; never raises
    a node's :class:`ZfileError` (it goes in that node's report).
    ``progress`` is called with the bytes newly sent to any node, and with
    the size of each file a node already holds unchanged, so it reaches
    ``len(configs) * sum(sizes)``.
    """
    return list(await asyncio.gather(*(_send_one(c, plan.files, clobber, compare, progress) for c in configs)))


async def _gather_one(
    config: ClientConfig, specs: Sequence[str], out: Path, compare: Compare, progress: Progress, filters: Filter
) -> NodeReport:
    began = time.monotonic()
    label = node_label(config.endpoint)
    moved = _Counter(progress)
    got: list[Outcome] = []
    unchanged = 0
    try:
        async with Client(config) as client:
            plan = await plan_download(client, specs, out / label, filters=filters)
            skip = await unchanged_downloads(plan.files, compare)
            todo = dataclasses.replace(
                plan, files=[item for item, same_here in zip(plan.files, skip, strict=True) if not same_here]
            )
            unchanged = len(plan.files) - len(todo.files)
            # Names the node lacks and files skipped come back as failed outcomes.
            got = await fetch(client, todo, progress=moved)
    except ZfileError as exc:
        return NodeReport(
            config.endpoint,
            label,
            files=unchanged + sum(o.result is not None for o in got),
            unchanged=unchanged,
            bytes=moved.total,
            seconds=time.monotonic() - began,
            error=exc,
        )
    failed = tuple(o for o in got if o.error is not None)
    return NodeReport(
        config.endpoint,
        label,
        files=unchanged + sum(o.result is not None for o in got),
        unchanged=unchanged,
        bytes=moved.total,
        seconds=time.monotonic() - began,
        digest=None if failed else _digest_of([(e.name, e.algo, e.digest) for e, _ in plan.files]),
        failed=failed,
    )


async def gather(
    configs: Sequence[ClientConfig],
    specs: Sequence[str],
    out: Path,
    *,
    compare: Compare = Compare.QUICK,
    progress: Progress = no_progress,
    filters: Filter = NO_FILTER,
) -> list[NodeReport]:
    """Download the names and prefixes ``specs`` from every node of
    ``configs`` at once, node N's files into ``out/<node_label(N)>/`` named
    as :func:`~zfile.client.plan.plan_download` says, less what ``filters``
    exclude.

    Returns one :class:`NodeReport` per config, in their order; never raises
    a node's :class:`ZfileError`.  A spec a node does not hold fails that
    node (not-found).  ``progress`` is called with bytes newly received.
    """
    return list(await asyncio.gather(*(_gather_one(c, specs, out, compare, progress, filters) for c in configs)))


__all__ = ["NodeReport", "gather", "node_label", "read_targets", "send_everywhere", "tree_digest"]
