"""zfile's error hierarchy.

Every failure a caller of zfile can see is a :class:`ZfileError`.  Foreign
exceptions (``zmq.ZMQError``, msgpack's errors, ``OSError``) are translated at
the boundary that meets them (``zfile.transport`` for sockets and frames,
``zfile.store`` for the file system), in the manner of httpcore's exception
mapping.

Each error carries an :class:`ErrorCode`, the same code that travels in an
``ERROR`` message on the wire (see docs/protocol.md), and a sentence fit to
show a person.
"""

from __future__ import annotations

import errno
import os
from enum import StrEnum


class ErrorCode(StrEnum):
    """Wire codes of the ``ERROR`` message (docs/protocol.md, "Error codes")."""

    NOT_FOUND = "not-found"
    EXISTS = "exists"
    BAD_REQUEST = "bad-request"
    UNSUPPORTED_VERSION = "unsupported-version"
    TOO_LARGE = "too-large"
    NO_SPACE = "no-space"
    BUSY = "busy"
    INTERNAL = "internal"
    READ_ONLY = "read-only"


class ZfileError(Exception):
    """Base of every error zfile raises.

    ``str(err)`` is a one-line sentence for a person; ``err.code`` is the
    :class:`ErrorCode` that describes it on the wire.
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


# -- protocol ---------------------------------------------------------------


class ProtocolError(ZfileError):
    """A message broke the zfile protocol (malformed, out of order, over credit).

    ``transfer_id`` names the transfer the message belonged to when it could be
    read, so a server can answer that transfer with an ``ERROR``; it is
    ``None`` when even the id was unreadable.
    """

    code = ErrorCode.BAD_REQUEST

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        transfer_id: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.transfer_id = transfer_id


class LocalProtocolError(ProtocolError):
    """We were about to send something the protocol forbids (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""


# -- transport --------------------------------------------------------------


class TransportError(ZfileError):
    """A socket could not be bound, connected, written or read."""


class PeerTimeout(TransportError):
    """The peer did not answer within the configured time (seconds)."""


class PeerUnreachable(TransportError):
    """Nothing accepts a connection at the endpoint (refused, or no such ipc
    socket), or the connection to the daemon was lost mid-transfer."""


class PeerGone(TransportError):
    """The ROUTER has no connection to that peer identity (EHOSTUNREACH)."""


class PeerStalled(TransportError):
    """The peer's pipe stayed full for the idle timeout: it is not reading,
    and the daemon will not buffer for it."""


class EndpointError(ZfileError, ValueError):
    """The endpoint text is not one of the accepted forms (README, "Endpoints")."""

    code = ErrorCode.BAD_REQUEST


# -- store and transfers ----------------------------------------------------


class StoreError(ZfileError):
    """The store refused or failed an operation."""


class BadName(StoreError):
    """A file name is absolute, contains ``..``, NUL or control characters,
    is too long, or resolves outside the store's root."""

    code = ErrorCode.BAD_REQUEST


class NameConflict(BadName):
    """A name clashes with the store's tree: a directory is stored at it, or
    a file is stored where it needs a directory (``d/e`` while ``d/e/f``
    exists, or ``d/e/f`` while ``d/e`` is a file).  The wire code is
    BadName's; HTTP answers 409 Conflict (RFC 9110, 15.5.10)."""


class NotFound(StoreError):
    code = ErrorCode.NOT_FOUND


class Exists(StoreError):
    code = ErrorCode.EXISTS


class TooLarge(StoreError):
    code = ErrorCode.TOO_LARGE


class NoSpace(StoreError):
    code = ErrorCode.NO_SPACE


class ReadOnly(StoreError):
    """The daemon serves its store read-only (``zfile serve --read-only``):
    it refuses every request that would change a file."""

    code = ErrorCode.READ_ONLY


class Busy(ZfileError):
    code = ErrorCode.BUSY


class IntegrityError(ZfileError):
    """Received bytes do not match the declared size or whole-file digest."""

    code = ErrorCode.BAD_REQUEST


class RemoteError(ZfileError):
    """The peer answered with an ``ERROR`` message; ``code`` is its wire code."""


class LocalFileError(ZfileError):
    """A local file or directory (the client's side) could not be read or written."""

    @classmethod
    def writing(cls, path: str | os.PathLike[str], exc: OSError) -> LocalFileError:
        """The error of ``exc`` met writing ``path``; its code is
        ``no-space`` when the local disk or quota is full (ENOSPC, EDQUOT),
        which ends a tree's download as a full daemon disk ends an upload."""
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        return cls(f"cannot write {path}: {exc.strerror}", code=ErrorCode.NO_SPACE if full else None)


class Skipped(LocalFileError):
    """A local entry a tree upload does not send, and why: a symbolic link
    (unless followed), a special file, an empty or unreadable directory, or a
    name that is not valid UTF-8."""


class NameCollision(LocalFileError):
    """Two local paths would be stored under one name; nothing was sent."""


class ConfigError(ZfileError):
    """Configuration is invalid: an unknown key, a value of the wrong type, a key
    file that cannot be read, or settings that may not go together.  The message
    names the key, variable or file at fault."""


class AuthFailed(TransportError):
    """The CURVE handshake with the daemon failed: it did not accept this
    client's key, or one side uses CURVE and the other does not."""
