"""Plain configuration values for the daemon (uvicorn's ``Config`` idea).

:mod:`zfile.settings` builds a :class:`ServerConfig` from flags, ``ZFILE_*``
environment variables and the TOML config file; :class:`zfile.server.Server`
only reads it; :func:`check_bind` refuses one that would serve the store
in clear beyond this machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from zfile.errors import ConfigError
from zfile.protocol.machine import DEFAULT_CHUNK_SIZE
from zfile.transport.endpoint import DEFAULT_ENDPOINT, is_loopback

MiB = 1 << 20

log = logging.getLogger("zfile.server")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``zfile serve`` needs; sizes in bytes, times in seconds."""

    bind: str = DEFAULT_ENDPOINT
    root: str = "./zfile-data"
    #: Where the files are kept: a directory, or ``s3://BUCKET/PREFIX/`` for
    #: an S3-compatible object store (docs/s3.md).  None: ``root``.
    store: str | None = None
    #: The S3 endpoint's URL (``http://127.0.0.1:8333``); None: AWS S3.
    s3_endpoint: str | None = None
    #: Largest chunk the daemon sends in a download.
    chunk_size: int = DEFAULT_CHUNK_SIZE
    #: Credit window per transfer: bytes a sender may have unacknowledged.
    #: Bounds the memory one transfer can hold, whatever the file size.
    window: int = 8 * MiB
    #: Uploads larger than this are refused with ``too-large``.
    max_file_size: int = 1 << 40
    #: Transfers running at once; a request over the limit gets ``busy``.
    max_transfers: int = 256
    #: Transfers one client may run at once (a client is its CURVE key, else
    #: its connection); more get ``busy``, so one client cannot take every slot.
    max_transfers_per_peer: int = 64
    #: Bytes per second an upload or download must average over each
    #: ``idle_timeout`` while it waits on its peer; a slower one is ended
    #: (an upload keeps its partial for resume).  0: no minimum.
    min_rate: int = 1024
    #: A transfer that hears nothing from its peer for this long is ended
    #: (an upload keeps its partial for resume).
    idle_timeout: float = 60.0
    #: On SIGINT/SIGTERM, running transfers get this long to finish.
    grace_period: float = 30.0
    max_name_bytes: int = 4096
    #: Partials unused for this long are swept.
    partial_ttl: float = 24 * 3600.0
    #: Most partials kept, and most bytes they hold, in all and per peer (its
    #: CURVE key, else its address); past any of them the oldest partials no
    #: upload is using are deleted first.
    max_partials: int = 1024
    max_partial_bytes: int = 1 << 40
    max_partials_per_peer: int = 128
    max_partial_bytes_per_peer: int = 256 << 30
    #: DEBUG, INFO, WARNING or ERROR.
    log_level: str = "INFO"
    #: "text" (one line a record) or "json" (one JSON object a line).
    log_format: str = "text"
    #: The daemon's CURVE key pair, a pyzmq ``.key_secret`` file; set together
    #: with ``authorized_keys`` to turn CurveZMQ on.
    secret_key: str | None = None
    #: Directory of authorized client public keys (``*.key`` files).
    authorized_keys: str | None = None
    #: Allow binding a non-loopback address without CURVE, and serving HTTP
    #: on one without ``http_tokens``.
    insecure: bool = False
    #: ``HOST:PORT`` of the HTTP front (:mod:`zfile.http`); None: no HTTP.
    http: str | None = None
    #: The HTTP bearer token file, one ``TOKEN read|write`` a line; re-read on
    #: SIGHUP.  Needed to serve HTTP on any address but loopback.
    http_tokens: str | None = None
    #: PEM certificate chain and private key files: with both, HTTP is HTTPS.
    http_cert: str | None = None
    http_key: str | None = None
    #: Take part in chain fan-out: store an upload and forward it, as it
    #: arrives, to the endpoints the uploading client named (with CURVE, as
    #: this daemon's own key pair).  Off: a PUT naming a chain is refused.
    forward: bool = False
    #: Serve the store read-only: every request that would change a file
    #: (PUT, PUT-MANY, PUT-STREAM, REMOVE, MOVE, a chain upload; HTTP PUT and
    #: DELETE) is refused with ``read-only`` before any byte is stored.
    read_only: bool = False
    #: At start, record the files under the root that the catalog does not
    #: list, so that they are served (a catalog lost, a tree copied in by
    #: hand; :mod:`zfile.store.adopt`).  A local store only.
    adopt: bool = False


def check_bind(config: ServerConfig) -> None:
    """Refuse to serve a non-loopback address unauthenticated and in clear.

    Without CURVE only loopback (127.0.0.0/8, ``localhost``, ``[::1]``) and
    ``ipc://`` endpoints may be bound; ``config.insecure`` overrides that with
    a warning.  Raises :class:`ConfigError`.
    """
    if config.secret_key is not None or is_loopback(config.bind):
        return
    if not config.insecure:
        raise ConfigError(
            f"refusing to bind {config.bind} without CURVE: anyone who can reach it could read and write the "
            "store. Set secret_key and authorized_keys (see `zfile keygen`), or pass --insecure"
        )
    log.warning(
        "INSECURE: serving %s without CURVE: no authentication and no encryption; "
        "anyone who can reach this address can read, replace and add files",
        config.bind,
    )
