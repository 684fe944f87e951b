"""The read-only guard: which requests change the store, and the refusal
a read-only daemon (``zfile serve --read-only``) answers them with.

The guard runs when a request opens its transfer, before its work starts,
so a refused upload never reserves a partial nor stores a byte.
"""

from __future__ import annotations

from zfile.errors import ErrorCode
from zfile.protocol.events import Error, Event, Move, Put, PutMany, PutStream, Remove

#: The requests that add, replace, rename or delete stored files.
CHANGING = (Put, PutMany, PutStream, Remove, Move)

#: The sentence every refusal carries (the CLI shows it after ``zfile: error:``).
REASON = "this daemon is read-only (zfile serve --read-only): it refuses {what}"


def changes_store(event: Event) -> bool:
    """Whether ``event`` opens a request that would change the store."""
    return isinstance(event, CHANGING)


def refusal(event: Event) -> Error:
    """The ERROR (code ``read-only``) answering ``event`` on a read-only daemon."""
    what = f"{event.TYPE} of {_target(event)}"
    return Error(event.id, ErrorCode.READ_ONLY.value, REASON.format(what=what))


def _target(event: Event) -> str:
    name = getattr(event, "name", None)
    if isinstance(event, PutMany):
        return _files(len(event.files))
    if isinstance(event, Remove) and not event.names:
        return f"the files under {event.prefix!r}"
    if isinstance(event, Remove):
        return _files(len(event.names)) if len(event.names) != 1 else repr(event.names[0])
    return repr(name)


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


__all__ = ["CHANGING", "REASON", "changes_store", "refusal"]
