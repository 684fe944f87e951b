"""CurveZMQ keys and the daemon's list of authorized client keys.

Keys are kept in pyzmq's certificate format (``zmq.auth``, after czmq's
``zcert``): ``NAME.key`` holds a public key, ``NAME.key_secret`` the key pair.
Keys are Z85 text, 40 characters for 32 bytes (ZeroMQ RFC 32 and RFC 26).

The daemon's authorized keys are a directory of ``*.key`` public key files,
like OpenSSH's ``authorized_keys``: a client is served only when its public
key is there.  :class:`AuthorizedKeys` holds the set the ZAP handler
(ZeroMQ RFC 27) consults; :meth:`AuthorizedKeys.reload` replaces it whole, so
a reload never leaves a half-read set in force.

Only :mod:`zfile.transport`, :mod:`zfile.server` and the CLI use this module.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import zmq.auth
from zmq.utils import z85

from zfile.errors import ConfigError, LocalFileError

log = logging.getLogger("zfile.auth")

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A CURVE key pair as Z85 text (40 bytes each)."""

    public: bytes
    secret: bytes


def _check_z85(key: bytes, what: str, path: str | os.PathLike[str]) -> bytes:
    try:
        ok = len(key) == 40 and len(z85.decode(key)) == 32
    except (ValueError, KeyError, IndexError):
        ok = False
    if not ok:
        raise ConfigError(f"{path}: the {what} is not a 40-character Z85 CURVE key")
    return key


def _load(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or "no such file"
        raise ConfigError(f"cannot read key file {path}: {reason}") from None
    except ValueError:
        raise ConfigError(f"{path} is not a CURVE key file (no public-key line)") from None
    _check_z85(public, "public key", path)
    if secret is not None:
        _check_z85(secret, "secret key", path)
    return public, secret


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """The Z85 public key in a ``.key`` or ``.key_secret`` file.

    Raises :class:`~zfile.errors.ConfigError` naming the file when it cannot
    be read or holds no valid key.
    """
    return _load(path)[0]


def load_keypair(path: str | os.PathLike[str]) -> KeyPair:
    """The key pair in a ``.key_secret`` file.

    Raises :class:`~zfile.errors.ConfigError` when the file cannot be read,
    holds no valid key, or holds only a public key.
    """
    public, secret = _load(path)
    if secret is None:
        raise ConfigError(f"{path} holds only a public key; give the {SECRET_SUFFIX} file")
    return KeyPair(public, secret)


def generate_keypair(out_dir: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write a new key pair as ``OUT_DIR/NAME.key`` and ``OUT_DIR/NAME.key_secret``.

    The secret file is made readable by its owner only.  Existing files are
    never overwritten: raises :class:`~zfile.errors.LocalFileError` if either
    exists, or if the directory cannot be written, and
    :class:`~zfile.errors.ConfigError` for a ``name`` that is no file name.
    """
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ConfigError(f"{name!r} is not a usable key file name")
    out = Path(out_dir)
    public, secret = out / f"{name}{PUBLIC_SUFFIX}", out / f"{name}{SECRET_SUFFIX}"
    for path in (public, secret):
        if path.exists():
            raise LocalFileError(f"{path} exists; refusing to overwrite a key")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Create the secret file 0600 before pyzmq writes into it, so the
        # secret key is never readable by others, not even for a moment.
        os.close(os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        zmq.auth.create_certificates(out, name)
    except OSError as exc:
        raise LocalFileError(f"cannot write keys to {out}: {exc.strerror}") from None
    return public, secret


def load_authorized_keys(directory: str | os.PathLike[str]) -> frozenset[bytes]:
    """The Z85 public keys of every ``*.key`` file in ``directory``.

    Raises :class:`~zfile.errors.ConfigError` naming the directory or the
    file at fault: one bad file fails the whole load rather than silently
    leaving a client out.
    """
    path = Path(directory)
    try:
        files = sorted(p for p in path.iterdir() if p.name.endswith(PUBLIC_SUFFIX))
    except OSError as exc:
        raise ConfigError(f"cannot read authorized keys directory {path}: {exc.strerror}") from None
    return frozenset(load_public_key(f) for f in files)


class AuthorizedKeys:
    """The set of client keys the daemon serves, consulted by the ZAP handler.

    ``callback`` follows the credentials-provider interface of pyzmq's
    ``Authenticator.configure_curve_callback``: it gets the ZAP domain and the
    client's Z85 public key and returns whether to let it in.
    """

    #: Seconds between two log lines about the same refused key: a refused
    #: client's socket reconnects every 100 ms by default (zmq_setsockopt(3)).
    REFUSAL_LOG_INTERVAL = 60.0

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.keys = load_authorized_keys(self.directory)
        self._refusals_logged: dict[bytes, float] = {}

    def reload(self) -> int:
        """Re-read the directory; return how many keys are now authorized.

        On error the previous set stays in force and
        :class:`~zfile.errors.ConfigError` is raised.
        """
        self.keys = load_authorized_keys(self.directory)
        return len(self.keys)

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.keys
        if not allowed:
            now = time.monotonic()
            if now - self._refusals_logged.get(key, -math.inf) >= self.REFUSAL_LOG_INTERVAL:
                if len(self._refusals_logged) > 10_000:
                    self._refusals_logged.clear()
                self._refusals_logged[key] = now
                log.warning("refused client key %s: not in %s", key.decode("ascii", "replace"), self.directory)
        return allowed


__all__ = [
    "AuthorizedKeys",
    "KeyPair",
    "generate_keypair",
    "load_authorized_keys",
    "load_keypair",
    "load_public_key",
]
