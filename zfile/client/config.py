"""Plain configuration values for a client, as :class:`ServerConfig` is for
the daemon: :class:`zfile.client.Client` only reads them, and the CLI builds
them from its flags and settings."""

from __future__ import annotations

from dataclasses import dataclass

from zfile.protocol.machine import DEFAULT_CHUNK_SIZE
from zfile.transport.dealer import ClientCurve
from zfile.transport.endpoint import DEFAULT_ENDPOINT

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """How a :class:`~zfile.client.Client` reaches a daemon and paces its
    transfers; sizes in bytes, times in seconds.

    ``ClientConfig("tcp://10.0.0.5:5555", timeout=60)``; the endpoint takes
    the forms of ``zfile --server`` (``host``, ``host:port``, ``tcp://``,
    ``ipc://``) and is checked when the client is made
    (:class:`EndpointError`).
    """

    endpoint: str = DEFAULT_ENDPOINT
    #: How long to wait for any answer (or for a send to go) before
    #: :class:`PeerTimeout`.
    timeout: float = 15.0
    #: Credit a download grants: bytes the daemon may send ahead of what is
    #: written to disk.
    window: int = 8 * MiB
    #: Largest chunk an upload reads and sends at once.
    chunk_size: int = DEFAULT_CHUNK_SIZE
    #: Files of at most this size travel inside their PUT (one round trip).
    inline_max: int = 256 << 10
    #: Most bytes of small files in one PUT-MANY message.
    many_bytes: int = 1 * MiB
    #: Files of a tree (``send_paths``, ``fetch``) transferred at once.
    concurrency: int = 32
    #: A put or get answered ``busy`` is tried again this many times ...
    busy_retries: int = 6
    #: ... after a backoff from this many seconds, doubling with jitter ...
    busy_backoff: float = 0.2
    #: ... up to this many seconds (about 12 s in all with the defaults).
    busy_backoff_max: float = 5.0
    #: CurveZMQ: the daemon's public key and this client's key pair
    #: (:func:`zfile.transport.curve.load_public_key`, ``load_keypair``);
    #: None for a plain connection.
    curve: ClientCurve | None = None
    #: Bytes per second the client's transfers may move in all, both ways
    #: (a token bucket, :mod:`zfile.client.pacing`); None for no limit.
    bwlimit: int | None = None


__all__ = ["ClientConfig"]
