"""Tests of zfile.transport.context: the one ZeroMQ context of a process's clients."""

from __future__ import annotations

import os
from pathlib import Path

from zfile.client.client import Client
from zfile.transport import context
from zfile.transport.context import client_context


def io_threads() -> int:
    """The ZeroMQ I/O threads of this process: one per context."""
    tasks = Path("/proc/self/task")
    return sum((t / "comm").read_text().startswith("ZMQbg/IO") for t in tasks.iterdir())


async def test_the_clients_of_a_process_share_one_io_thread(daemon):
    before = io_threads()
    clients = [Client(daemon.endpoint) for _ in range(5)]
    for c in clients:
        await c.__aenter__()
    try:
        for c in clients:
            await c.ping()
        assert io_threads() - before <= 1  # a context each would start five
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)
    assert not client_context().closed  # a client's close leaves the shared context alone


def test_a_child_after_fork_or_a_closed_context_gets_a_new_one(monkeypatch):
    first = client_context()
    assert client_context() is first
    parent = os.getpid()
    monkeypatch.setattr(context.os, "getpid", lambda: parent + 1)  # as a forked child sees it
    child = client_context()
    assert child is not first
    monkeypatch.undo()
    child.destroy(linger=0)
    again = client_context()
    assert again is not child and not again.closed
