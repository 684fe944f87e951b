"""An :class:`~zfile.protocol.events.Entry` as JSON: the object ``zfile ls --json``
prints for each file and the HTTP front's listings return."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from zfile.protocol.events import Entry


def entry_json(entry: Entry) -> dict[str, Any]:
    """The JSON object of ``entry``: ``name``; ``size`` in bytes; ``mtime``
    and ``received`` as ISO 8601 UTC; ``mtime_ns`` in nanoseconds since the
    epoch; ``mode`` as four octal digits; ``digest`` in hex and its ``algo``;
    ``peer`` who sent it."""
    return {
        "name": entry.name,
        "size": entry.size,
        "mtime": datetime.fromtimestamp(entry.mtime_ns / 1e9, UTC).isoformat(),
        "mtime_ns": entry.mtime_ns,
        "mode": f"{entry.mode:04o}",
        "digest": entry.digest.hex(),
        "algo": entry.algo,
        "received": datetime.fromtimestamp(entry.received, UTC).isoformat(),
        "peer": entry.peer,
    }
