"""A blocking face of :class:`~zfile.client.client.Client` for plain scripts.

``with SyncClient(endpoint) as c: c.put(path)``: the client runs on its own
event loop in a background thread, so the calling code needs none, and a
script that already runs a loop (a notebook) is not disturbed by it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from zfile.client import tree
from zfile.client.channel import Progress, no_progress
from zfile.client.client import Client, Result
from zfile.client.config import ClientConfig
from zfile.client.ops import Removal, Status
from zfile.client.plan import Outcome, plan_download
from zfile.errors import TransportError, ZfileError
from zfile.protocol.events import Entry
from zfile.transport.endpoint import DEFAULT_ENDPOINT

T = TypeVar("T")


class SyncClient:
    """A connection to one zfile daemon whose calls block until done.

    Takes what :class:`Client` takes (a :class:`ClientConfig` or an endpoint
    string); ``with SyncClient(...) as c:`` connects and closes, as do
    :meth:`connect` and :meth:`close`.  Each call returns what the
    :class:`Client` method of the same name returns and raises the same
    :class:`~zfile.errors.ZfileError` subclasses, in the calling thread.
    Threads may share one SyncClient; their calls run at once over its one
    socket.  ``progress`` callbacks are called in the client's own thread
    and must not call back into the client.  Interrupting a call
    (KeyboardInterrupt) cancels its transfer.
    """

    def __init__(self, config: ClientConfig | str = DEFAULT_ENDPOINT) -> None:
        # Made here, not in the loop: a bad endpoint fails in the caller at once.
        self._client = Client(config)
        self.config = self._client.config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SyncClient:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Start the client's thread and connect; raises :class:`TransportError`."""
        if self._thread is not None:
            return
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="zfile-sync-client", daemon=True)
        self._thread.start()
        ready.result()
        try:
            self._call(self._client.connect())
        except BaseException:
            self._halt()
            raise

    def close(self) -> None:
        """Close the connection and stop the client's thread; calls still
        running in other threads raise :class:`TransportError`.  Idempotent."""
        if self._thread is None:
            return
        try:
            self._call(self._client.close())
        finally:
            self._halt()

    def put(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        clobber: bool = True,
        progress: Progress = no_progress,
    ) -> Result:
        """Upload the file at ``path`` as ``name`` (default: its basename);
        see :meth:`Client.put`."""
        return self._call(self._client.put(path, name, clobber=clobber, progress=progress))

    def put_many(
        self,
        files: Sequence[tuple[str | os.PathLike[str], str]],
        *,
        clobber: bool = True,
        progress: Progress = no_progress,
    ) -> list[Result | ZfileError]:
        """Upload small files, ``(path, name)`` pairs, in one message; a
        Result or an error per file (:meth:`Client.put_many`)."""
        return self._call(self._client.put_many(files, clobber=clobber, progress=progress))

    def get(self, name: str, dest: str | os.PathLike[str], *, progress: Progress = no_progress) -> Result:
        """Download ``name`` to the local path ``dest``; see :meth:`Client.get`."""
        return self._call(self._client.get(name, dest, progress=progress))

    def list(self, prefix: str = "") -> list[Entry]:
        """The catalog entries whose names start with ``prefix``, by name
        (:meth:`Client.list`, all pages)."""

        async def collect() -> list[Entry]:
            return [entry async for entry in self._client.list(prefix)]

        return self._call(collect())

    def remove(self, names: Sequence[str] = (), *, prefix: str | None = None, dry_run: bool = False) -> list[Removal]:
        """Remove stored files by name and/or every file under ``prefix``;
        a :class:`Removal` per file (:meth:`Client.remove`)."""
        return self._call(self._client.remove(names, prefix=prefix, dry_run=dry_run))

    def move(self, name: str, to: str, *, clobber: bool = False) -> Entry:
        """Rename a stored file; its new entry (:meth:`Client.move`)."""
        return self._call(self._client.move(name, to, clobber=clobber))

    def stat(self, name: str) -> Entry:
        """The entry of a stored file (:meth:`Client.stat`)."""
        return self._call(self._client.stat(name))

    def ping(self) -> Status:
        """The daemon's state and the round trip (:meth:`Client.ping`)."""
        return self._call(self._client.ping())

    def send_paths(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        clobber: bool = True,
        progress: Progress = no_progress,
    ) -> list[Outcome]:
        """Upload files and directories, a directory as ``<its name>/<relative
        path>``; one Outcome per file, in order, a failed file not stopping
        the others (:func:`zfile.send_paths`).  Raises
        :class:`LocalFileError` when a path does not exist and
        :class:`NameCollision` when two would be stored under one name."""
        return self._call(tree.send_paths(self._client, paths, clobber=clobber, progress=progress))

    def get_paths(
        self, specs: Sequence[str], out: str | os.PathLike[str], *, progress: Progress = no_progress
    ) -> list[Outcome]:
        """Download stored names and prefixes (``"logs/"``) below the
        directory ``out``, as ``zfile get`` does (:func:`zfile.plan_download`,
        :func:`zfile.fetch`); one Outcome per file, then one per spec that
        matched nothing (its error a :class:`RemoteError`, code
        ``not-found``) and per file skipped (:class:`zfile.DownloadPlan`)."""

        async def run() -> list[Outcome]:
            plan = await plan_download(self._client, specs, Path(out))
            return await tree.fetch(self._client, plan, progress=progress)

        return self._call(run())

    # -- the client's thread -------------------------------------------------------

    def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            ready.set_result(None)
            await self._stop.wait()

        # asyncio.run also cancels what is left and joins the worker threads.
        asyncio.run(main())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise TransportError("the client is not connected")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a SyncClient cannot be called from its own thread (a progress callback)")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # an interrupted caller stops its transfer too
            raise

    def _halt(self) -> None:
        assert self._thread is not None
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._thread = self._loop = self._stop = None


__all__ = ["SyncClient"]
