"""Credit-based flow control, both ends of a stream (sans I/O).

The receiver of a stream grants credit in bytes (FileMQ's NOM, RFC 35; the
ZeroMQ Guide, chapter 7, "Credit-Based Flow Control"); the sender never has
more bytes outstanding than it was granted.  Two decisions follow from that,
and each is made here and nowhere else:

- **where a sender cuts its data**: :func:`next_piece` says how many bytes of
  a buffer may go in the next CHUNK under the credit it holds now;
- **when a receiver grants again**: a :class:`CreditWindow` keeps the bytes
  the receiver has granted ahead of what it has consumed (written to disk,
  and, on a forwarding hop, handed on) at about one window, and grants in
  steps of at least :func:`grant_step` bytes, so a stream costs one CREDIT
  message per few chunks.

Sizes, offsets and credit are bytes; offsets count from the file's start.
"""

from __future__ import annotations


def grant_step(window: int, chunk: int) -> int:
    """The least CREDIT a receiver sends (bytes; the last one of a file may
    be less): a quarter of its ``window``, so that a stream costs one CREDIT
    per few chunks yet keeps three quarters of the window in flight; never
    less than one ``chunk``, nor more than the ``window`` (a window smaller
    than a chunk must still be granted again)."""
    return min(window, max(chunk, window // 4))


def next_piece(credit: int, remaining: int) -> int:
    """Bytes of the next CHUNK a sender may send: ``remaining`` bytes of data
    are left to send and ``credit`` bytes are granted and unspent.  0 means
    wait for a CREDIT.  Credit is granted in bytes, not chunks, so a chunk
    read from the file may go out in several pieces."""
    if credit < 0 or remaining < 0:
        raise ValueError(f"credit ({credit}) and remaining ({remaining}) must not be negative")
    return min(credit, remaining)


class CreditWindow:
    """The receiver's side of one stream's credit.

    The stream starts at byte ``offset`` and ends at byte ``size`` (None
    while the size is not known yet, as for a GET before GET-META).  The
    receiver first grants :attr:`initial` bytes; after consuming data up to a
    new offset it asks :meth:`grant` how much to grant now.  ``window`` bytes
    is how far ahead of what is consumed the grants may reach, ``chunk`` the
    sender's chunk size (bytes), which bounds the smallest step.
    """

    def __init__(self, offset: int, size: int | None, window: int, chunk: int) -> None:
        if window <= 0 or chunk <= 0:
            raise ValueError(f"window ({window}) and chunk ({chunk}) must be positive")
        self.size = size
        self.window = window
        self.chunk = chunk
        end = offset + window
        #: Where the grants made so far end (byte offset).
        self.granted_end = end if size is None else min(size, end)
        #: The first grant, in bytes (PUT-READY's or GET's ``credit``).
        self.initial = self.granted_end - offset

    def grant(self, consumed: int, window: int | None = None) -> int:
        """Bytes of credit to grant now that the receiver has consumed the
        stream up to byte ``consumed``; 0 when no CREDIT is due yet.

        ``window`` overrides the window for this decision (a daemon shrinks
        it while many uploads share its memory; credit already granted stays
        valid).  A grant is due once it would be at least
        :func:`grant_step` bytes, or when it reaches the end of the stream.
        """
        window = self.window if window is None else window
        end = consumed + window
        if self.size is not None:
            end = min(self.size, end)
        step = end - self.granted_end
        if step <= 0:
            return 0
        if step >= grant_step(window, self.chunk) or end == self.size:
            self.granted_end = end
            return step
        return 0

    def due_at(self) -> int | None:
        """The least consumed offset at which :meth:`grant` (with this
        window) grants again, or None when everything up to the stream's
        size is granted.  A receiver whose sender has spent its credit
        waits until it has consumed this far, and no further."""
        if self.size is not None and self.granted_end >= self.size:
            return None
        due = self.granted_end + grant_step(self.window, self.chunk) - self.window
        if self.size is not None:
            due = min(due, self.size - self.window)
        return due

    def set_size(self, size: int) -> None:
        """Learn the stream's size (bytes) once it is announced (GET-META)."""
        self.size = size


def relayed(written: int, handed: int) -> int:
    """How far a forwarding hop of a chain has consumed its stream (byte
    offset): the bytes it has both written to its own store (``written``,
    an offset) and handed to its successor (``handed``, an offset).  A hop
    grants its predecessor credit only up to here, so the slowest node's
    credit paces the whole chain and each hop holds at most one window of
    received, unconsumed bytes."""
    if written < 0 or handed < 0:
        raise ValueError(f"written ({written}) and handed ({handed}) must not be negative")
    return min(written, handed)


def replay_floor(granted_end: int, window: int) -> int:
    """The first byte a forwarding hop must still hold in memory, so that
    it can re-link past a failed successor: ``granted_end`` is where its
    successor's grants end (byte offset), ``window`` the successor's first
    grant (its window, bytes).

    The node after the failed one has consumed at least ``granted_end -
    window`` (the failed node's grants) less one window more (its own
    grants to the failed node), when every hop runs the same window; so
    two windows before ``granted_end`` is the least it can resume from.
    """
    return max(0, granted_end - 2 * window)


def resumed_window(consumed: int, received: int, size: int, window: int, chunk: int) -> CreditWindow:
    """The credit of a stream that a new sender takes over from byte
    ``received`` while the receiver has consumed up to ``consumed`` (a
    chain re-linked past a failed node).  Its :attr:`CreditWindow.initial`
    is what the new sender may send at once: the window less what is
    received and not yet consumed, never negative, so memory stays within
    one window across the change of sender."""
    if not 0 <= consumed <= received <= size:
        raise ValueError(f"need 0 <= consumed ({consumed}) <= received ({received}) <= size ({size})")
    credit = CreditWindow(consumed, size, window, chunk)
    credit.granted_end = max(received, credit.granted_end)
    credit.initial = credit.granted_end - received
    return credit


__all__ = ["CreditWindow", "grant_step", "next_piece", "relayed", "replay_floor", "resumed_window"]
