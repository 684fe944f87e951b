"""The daemon's HTTP front (aiohttp): the store's files for browsers, curl and
any HTTP client, beside ZeroMQ and over the same :class:`~zfile.store.Store`.

:class:`HttpFront` (:mod:`zfile.http.app`) is what the server starts and
stops; the requests it answers are described there.  Imports only the
store, protocol and error layers.  :mod:`zfile.http.access` (addresses and
tokens) does not load aiohttp, so the settings can check an address cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zfile.http.app import HttpFront


def __getattr__(name: str) -> Any:
    # aiohttp is imported only when something asks for the front itself.
    if name == "HttpFront":
        from zfile.http.app import HttpFront

        return HttpFront
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["HttpFront"]
