"""zfile: ship files between the machines of a cluster over ZeroMQ.

The public Python API is the names in :data:`__all__` (docs/api.md): a
:class:`Client` for asyncio code, a :class:`SyncClient` for plain code, their
:class:`ClientConfig`, the tree helpers, the daemon (:class:`Server`,
:class:`ServerConfig`) and the error classes.  Everything else, the
submodules included, is private and may change without notice.

The names are imported when first used, so ``import zfile`` costs little and
a client never imports the daemon.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "Client": "zfile.client.client",
    "Result": "zfile.client.client",
    "Removal": "zfile.client.ops",
    "Status": "zfile.client.ops",
    "Streamed": "zfile.client.ops",
    "ClientConfig": "zfile.client.config",
    "SyncClient": "zfile.client.sync",
    "Progress": "zfile.client.channel",
    "Outcome": "zfile.client.plan",
    "send_paths": "zfile.client.tree",
    "plan_upload": "zfile.client.plan",
    "UploadPlan": "zfile.client.plan",
    "DownloadPlan": "zfile.client.plan",
    "plan_download": "zfile.client.plan",
    "fetch": "zfile.client.tree",
    "move_tree": "zfile.client.moves",
    "Moved": "zfile.client.moves",
    "Filter": "zfile.client.filters",
    "Entry": "zfile.protocol.events",
    "ClientCurve": "zfile.transport.dealer",
    "load_keypair": "zfile.transport.curve",
    "load_public_key": "zfile.transport.curve",
    "Server": "zfile.server.server",
    "ServerConfig": "zfile.server.config",
    "EndpointError": "zfile.errors",
    **dict.fromkeys(
        [
            "ErrorCode",
            "ZfileError",
            "ProtocolError",
            "LocalProtocolError",
            "RemoteProtocolError",
            "TransportError",
            "PeerTimeout",
            "PeerUnreachable",
            "AuthFailed",
            "RemoteError",
            "LocalFileError",
            "Skipped",
            "NameCollision",
            "IntegrityError",
            "ConfigError",
            "StoreError",
            "BadName",
            "NameConflict",
            "NotFound",
            "Exists",
            "TooLarge",
            "NoSpace",
            "Busy",
        ],
        "zfile.errors",
    ),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zfile' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later uses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
