"""Which partial files are in use: the claims that keep two writers off one partial.

A partial is named by its transfer id (:func:`zfile.store.partial.transfer_id`),
so two uploads of the same file would write the same ``.part``.  An upload
claims its transfer id before it touches the partial and releases it when it
finishes; a second claim meanwhile is refused as Busy.  The sweep of expired
partials holds a claim of its own while it deletes one, so an upload racing
the deletion is refused too.  Every method is synchronous: a check and its
claim never have an await between them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from zfile.errors import Busy
from zfile.protocol.names import quote_name

U = TypeVar("U")


class Claims(Generic[U]):
    """Transfer id -> the live upload (of type ``U``) holding its partial."""

    def __init__(self, on_release: Callable[[U], None] | None = None) -> None:
        # None: held by the sweep while it deletes the partial.
        self._held: dict[str, U | None] = {}
        self._on_release = on_release

    def __contains__(self, transfer: str) -> bool:
        return transfer in self._held

    def __len__(self) -> int:
        return len(self._held)

    def claim(self, transfer: str, upload: U, name: str) -> None:
        """Record ``upload`` as the holder of ``transfer``'s partial; Busy
        (naming the file ``name``) when anything holds it already."""
        if transfer in self._held:
            raise Busy(f"an upload of {quote_name(name)} is already in progress")
        self._held[transfer] = upload

    def release(self, transfer: str, upload: U) -> None:
        """Drop ``upload``'s claim of ``transfer`` and tell ``on_release``; a
        no-op when it holds none."""
        if self._held.get(transfer) is upload:
            del self._held[transfer]
            if self._on_release is not None:
                self._on_release(upload)

    def uploads(self) -> list[U]:
        """The live uploads, in the order they claimed."""
        return [u for u in self._held.values() if u is not None]

    @contextlib.contextmanager
    def sweeping(self, transfer: str) -> Iterator[None]:
        """Hold ``transfer``'s partial while the sweep deletes it; the caller
        checks first that nothing holds it."""
        self._held[transfer] = None
        try:
            yield
        finally:
            del self._held[transfer]
