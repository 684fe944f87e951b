"""Service notifications to systemd: the sd_notify(3) datagram protocol.

A unit with ``Type=notify`` passes ``$NOTIFY_SOCKET``, an ``AF_UNIX``
datagram socket (a path, or an abstract name written with a leading ``@``);
each notification is one datagram of newline-separated ``KEY=VALUE`` lines:
``READY=1``, ``STATUS=...``, ``RELOADING=1``, ``STOPPING=1``, ``WATCHDOG=1``,
``EXTEND_TIMEOUT_USEC=...``.
``$WATCHDOG_USEC`` (with ``$WATCHDOG_PID``, when set, naming this process)
asks for ``WATCHDOG=1`` more often than every that many microseconds.

Why not a library: the pure-Python ``sdnotify`` package has had no release
since 2017 and swallows every error; ``systemd-python`` and ``cysystemd``
bind libsystemd and need it (and a compiler) at install time.  The protocol
is a single ``sendto``, specified in sd_notify(3); this module is that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping

log = logging.getLogger("zfile.notify")

#: Seconds between EXTEND_TIMEOUT_USEC notifications while a start runs long.
EXTEND_PERIOD = 10.0


class Notifier:
    """Sends notifications to ``$NOTIFY_SOCKET``; does nothing when it is unset.

    A failed send is logged once and otherwise ignored: the service manager
    going away must not take the daemon down with it.
    """

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        address = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        self._sock: socket.socket | None = None
        self._warned = False
        if address.startswith("@"):
            # Abstract namespace: a leading NUL byte in place of '@' (unix(7)).
            self._address = b"\0" + address[1:].encode()
        elif address.startswith("/"):
            self._address = address
        elif address:
            log.warning("ignoring NOTIFY_SOCKET=%r: not a path or an abstract socket name", address)
        if self._address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_interval = watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines as one notification; True if it was sent."""
        if self._sock is None or self._address is None:
            return False
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify the service manager at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)
                self._warned = True
            return False
        return True

    async def report_status(self, status: Callable[[], str], period: float = 1.0) -> None:
        """Send ``status()`` (a ``STATUS=...`` line) whenever it changes,
        checked every ``period`` seconds; runs until cancelled."""
        last = status()
        while True:
            await asyncio.sleep(period)
            now = status()
            if now != last:
                self.notify(now)
                last = now

    async def extend_start(self, status: Callable[[], str], period: float | None = None) -> None:
        """While the start runs, every ``period`` seconds (default
        :data:`EXTEND_PERIOD`) ask the service manager for three periods
        more (``EXTEND_TIMEOUT_USEC``, sd_notify(3); systemd 236 and later)
        with ``status()`` (a ``STATUS=...`` line); runs until cancelled, when
        READY=1 is due.

        Without it a start longer than ``TimeoutStartSec=`` (90 s by
        default), such as ``--adopt`` hashing a large tree, is killed and,
        under ``Restart=on-failure``, begun again, over and over.  A start
        shorter than one period sends nothing.  The price: a start that
        hangs while its event loop runs (a store on a dead network file
        system) is not ended by the manager either; its STATUS says for how
        long it has been opening.  Without ``$NOTIFY_SOCKET`` it returns at once."""
        if not self.enabled:
            return
        period = EXTEND_PERIOD if period is None else period
        while True:
            await asyncio.sleep(period)
            self.notify(f"EXTEND_TIMEOUT_USEC={round(3 * period * 1e6)}", status())

    @contextlib.asynccontextmanager
    async def extending(self, status: Callable[[], str]) -> AsyncIterator[None]:
        """:meth:`extend_start` for as long as the ``async with`` body runs."""
        task = asyncio.create_task(self.extend_start(status))
        try:
            yield
        finally:
            task.cancel()

    async def watchdog(self) -> None:
        """Send ``WATCHDOG=1`` every :attr:`watchdog_interval` seconds until
        cancelled.  It runs on the event loop, so a stuck loop stops the pings
        and systemd restarts the service."""
        interval = self.watchdog_interval
        if interval is None:
            return
        log.info("systemd watchdog: pinging every %.3f s", interval)
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``, as
    sd_watchdog_enabled(3) recommends; None when no watchdog is asked of this
    process (unset, not a positive integer, or ``$WATCHDOG_PID`` names another)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    if not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 2 / 1e6
