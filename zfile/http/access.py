"""Who may reach the HTTP front: its address, the bearer tokens, and TLS.

:func:`parse_address` reads ``HOST:PORT``; :func:`is_loopback` says whether
a host is this machine only.  :class:`Tokens` is a token file, one
``TOKEN read|write`` a line (``#`` starts a comment), re-read by
:meth:`Tokens.reload`; ``write`` implies ``read``.  Requests present a token
as ``Authorization: Bearer TOKEN`` (RFC 6750 §2.1).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import ssl
from enum import IntEnum
from pathlib import Path

from zfile.errors import ConfigError

log = logging.getLogger("zfile.http")


def parse_address(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (all
    addresses); ConfigError when the port is missing or not in 1-65535."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"HTTP address {text!r} must be HOST:PORT with a port from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"HTTP address {text!r}: write an IPv6 address in brackets, [::1]:PORT")
    return host or "0.0.0.0", int(port)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the addresses of 127.0.0.0/8 and ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Access(IntEnum):
    """What a token allows; higher values include the lower ones."""

    NONE = 0
    READ = 1
    WRITE = 2


class Tokens:
    """The bearer tokens of ``path`` (module docstring for the format).

    Loaded at construction; ConfigError when the file cannot be read, a line
    is not ``TOKEN read|write``, or it holds no token at all.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tokens: dict[str, Access] = self._load()

    def __len__(self) -> int:
        return len(self._tokens)

    def _load(self) -> dict[str, Access]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the HTTP token file {self.path}: {exc}") from None
        tokens: dict[str, Access] = {}
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) != 2 or words[1] not in ("read", "write"):
                raise ConfigError(f"{self.path} line {number}: expected 'TOKEN read' or 'TOKEN write'")
            tokens[words[0]] = Access.WRITE if words[1] == "write" else Access.READ
        if not tokens:
            raise ConfigError(f"the HTTP token file {self.path} holds no token")
        return tokens

    def reload(self) -> int:
        """Re-read the file and return how many tokens it holds; on
        ConfigError the tokens in force stay."""
        self._tokens = self._load()
        return len(self._tokens)

    def access(self, authorization: str | None) -> Access:
        """What the ``Authorization`` header's bearer token allows (NONE when
        absent, not Bearer, or unknown).  Compares in constant time."""
        if authorization is None:
            return Access.NONE
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Access.NONE
        found = Access.NONE
        for known, level in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode("utf-8", "surrogateescape")):
                found = level
        return found


def load_access(address: str, tokens: str | None, insecure: bool) -> Tokens | None:
    """The tokens the HTTP front on ``address`` requires: those of the file
    ``tokens``, or None for none.  ConfigError for a file that does not load,
    or for no tokens on an address other than loopback unless ``insecure``
    (then a warning is logged)."""
    if tokens is not None:
        return Tokens(tokens)
    host, _ = parse_address(address)
    if not is_loopback(host):
        if not insecure:
            raise ConfigError(
                f"refusing to serve HTTP on {address} without tokens: anyone who can reach it could read "
                "and write the store. Give --http-tokens FILE, or pass --insecure"
            )
        log.warning("INSECURE: HTTP on %s without tokens: anyone who can reach it can read and write", address)
    return None


def load_tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """A server TLS context (TLS 1.2 or later) of the PEM ``cert`` chain and
    its ``key``, or None when neither is given; ConfigError when the files
    cannot be loaded or only one is given."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("the HTTP certificate and key go together: give both, or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the HTTP certificate {cert} with key {key}: {exc}") from None
    return context
