"""Parsing of the ENDPOINT a user types into a ZeroMQ endpoint.

Accepted forms (docs: README "Endpoints"): ``tcp://host:port``, ``ipc://path``,
``host:port``, ``[v6addr]:port``, ``host`` (port :data:`DEFAULT_PORT`).
"""

from __future__ import annotations

from zfile.errors import EndpointError

DEFAULT_PORT = 5555
DEFAULT_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_PORT}"


def parse_endpoint(text: str, default_port: int = DEFAULT_PORT) -> str:
    """Return the ZeroMQ endpoint for ``text``; raise :class:`EndpointError`."""
    text = text.strip()
    if not text:
        raise EndpointError("the endpoint is empty")
    if text.startswith("ipc://"):
        if len(text) == len("ipc://"):
            raise EndpointError(f"{text!r} names no socket path")
        return text
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme != "tcp":
            raise EndpointError(f"{text!r}: only tcp:// and ipc:// endpoints are supported")
        host, port = _split_host_port(rest, None, text)
        return f"tcp://{host}:{port}"
    host, port = _split_host_port(text, default_port, text)
    return f"tcp://{host}:{port}"


def _split_host_port(rest: str, default_port: int | None, original: str) -> tuple[str, str]:
    if rest.startswith("["):
        host, sep, tail = rest.partition("]")
        host += "]"
        if tail and not tail.startswith(":"):
            raise EndpointError(f"{original!r} is not host:port")
        port = tail[1:] if tail else ""
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    elif ":" in rest:
        raise EndpointError(f"{original!r}: write an IPv6 address as [addr]:port")
    else:
        host, port = rest, ""
    if not host or host == "[]":
        raise EndpointError(f"{original!r} names no host")
    if not port:
        if default_port is None:
            raise EndpointError(f"{original!r} names no port")
        return host, str(default_port)
    if port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
        raise EndpointError(f"{original!r}: port must be 1-65535")
    return host, port


def is_loopback(endpoint: str) -> bool:
    """True for ``ipc://`` and for tcp endpoints on 127.0.0.0/8, ``localhost`` or ``[::1]``."""
    if endpoint.startswith("ipc://"):
        return True
    host = endpoint.split("://", 1)[-1].rsplit(":", 1)[0]
    return host in ("localhost", "[::1]") or host.startswith("127.")
