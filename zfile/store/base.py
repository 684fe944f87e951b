"""What the daemon needs of a store: the :class:`Store` interface.

The server holds a :class:`Store`, made by :func:`zfile.store.make_store`,
and knows nothing of the backend behind it; today that is always
:class:`zfile.store.local.LocalStore`, files under a directory.  An upload
goes through an :class:`UploadHandle` (begin, write in order, commit; or
suspend to resume later, or abort), one whose size is known only at its end
(PUT-STREAM) through a :class:`StreamHandle`, a whole small file through
:meth:`Store.put_inline` or a batch of them through :meth:`Store.put_many`,
a download through a :class:`DownloadHandle` and its :class:`ChunkStream`.

Units throughout: sizes, offsets and lengths are bytes; ``mtime_ns`` is
nanoseconds since the epoch; ``now`` and an entry's ``received`` are seconds
since the epoch; ``mode`` holds permission bits, of which a store keeps
0o777 at most.  ``algo`` names a digest algorithm
(:mod:`zfile.protocol.digest`) and ``digest`` is its raw bytes.  ``peer`` is
who sent a file (a CURVE key or an address), recorded in its entry.

Errors: a store raises zfile errors only (:mod:`zfile.errors`).  A backend
turns its own failures (``OSError``, a remote service's errors) into
:class:`~zfile.errors.NoSpace` when the store is out of room and
:class:`~zfile.errors.StoreError` otherwise, before they leave it.  The
refusals a peer can cause are BadName (a name the rules of
:mod:`zfile.protocol.names` refuse, or a path the store cannot use),
ZfileError with code bad-request (an unknown ``algo``, a negative size or
offset), TooLarge, Exists, Busy, NotFound and IntegrityError (bytes that do
not match their declared size or digest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from zfile.errors import ZfileError
from zfile.fileio.chunks import BufferPool
from zfile.protocol.events import Buffer, Entry, PutFile
from zfile.protocol.quickcheck import Held


@dataclass(frozen=True, slots=True)
class StoreUsage:
    """A store's figures for monitoring: ``partials`` suspended or running
    uploads kept for resume and the ``partial_bytes`` they hold; ``free``
    bytes left for new files, or None when the backend has no such limit
    (an object store)."""

    partials: int
    partial_bytes: int
    free: int | None


class ChunkStream(Protocol):
    """A stored file's bytes from one offset to its end, chunk by chunk, in
    buffers a zero-copy send may hold on to.

    ``await next()`` returns ``(buffer, view)``: ``view`` holds the next
    chunk (at most the chunk size asked for) and is a slice of ``buffer``,
    which the caller hands back with ``pool.give(buffer, trackers)`` once
    the sends carrying ``view`` are issued.  It raises StoreError when the
    file ends early (it changed on disk while being sent) or cannot be read,
    NoSpace as a backend maps it.  :meth:`aclose` releases what the stream
    holds; call it once, when done or on failure.
    """

    #: Where the buffers come from and go back to.
    pool: BufferPool

    @property
    def done(self) -> bool:
        """True once every chunk up to the end has been handed out."""
        ...

    async def next(self) -> tuple[bytearray, memoryview]:
        """The next chunk; StoreError or NoSpace (class docstring)."""
        ...

    async def aclose(self) -> None:
        """Release the stream; never raises."""
        ...


class DownloadHandle(Protocol):
    """A stored file open for reading, made by :meth:`Store.open_download`.

    ``entry`` is its catalog entry; the bytes read are those of that entry
    even when the name is replaced meanwhile.  :meth:`close` it when done.
    """

    entry: Entry

    async def read(self, offset: int, length: int) -> bytes:
        """At most ``length`` bytes from byte ``offset``; b"" at or past the
        end.  ZfileError (bad-request) for a negative argument, StoreError
        when closed or when reading fails."""
        ...

    def reader(self, offset: int, chunk: int) -> ChunkStream:
        """A :class:`ChunkStream` of the file from byte ``offset`` to the
        entry's size, in chunks of at most ``chunk`` bytes; close this
        download only after the stream's ``aclose``.  StoreError when the
        download is closed."""
        ...

    def local_fd(self) -> int | None:
        """The descriptor of the local file that holds the bytes, which a
        caller may give to sendfile(2) (read with offsets only, never moved,
        and valid until :meth:`close`); None when the bytes are not in a
        local file (an object store) or the download is closed."""
        ...

    async def close(self) -> None:
        """Release the file; a no-op when already closed; never raises."""
        ...


class UploadHandle(Protocol):
    """One upload in progress, made by :meth:`Store.begin_upload`.

    ``transfer`` names the upload's partial: the same file (name, size,
    mtime) begun again after a suspend gets the same ``transfer`` and
    resumes.  ``offset`` is the number of bytes the store holds so far,
    where the next write must start.  Once :meth:`commit`, :meth:`suspend`
    or :meth:`abort` has returned or raised, the upload is finished and a
    write or commit raises StoreError.
    """

    transfer: str
    offset: int

    async def write(self, offset: int, data: Buffer) -> None:
        """Append ``data`` at byte ``offset``, which must equal :attr:`offset`.

        IntegrityError (the upload stays live) when ``offset`` is not the
        current end or the data would run past the declared size; NoSpace
        when the store is full (the upload is finished and its bytes
        dropped: it cannot complete); StoreError for other failures (the
        bytes so far are kept for a resume) or when the upload is finished.
        """
        ...

    def written_digest(self) -> bytes | None:
        """The digest, in the upload's algorithm, of the bytes written so far
        (:attr:`offset` of them), from the hashing the store does as it
        writes; None when the store cannot tell (a resumed upload whose
        earlier bytes it did not hash again).  A front that does not get the
        digest from its peer commits with this one, hashing nothing twice."""
        ...

    async def commit(self, digest: bytes) -> Entry:
        """Verify the bytes against ``digest``, publish them under the final
        name and return the catalog entry; a reader sees the old file or the
        new one, never a mixture.

        IntegrityError when fewer bytes than declared were written (kept for
        a resume) or the digest differs (dropped); BadName or Exists when the
        final name became unusable meanwhile; NoSpace or StoreError when the
        store fails.  Finished either way.
        """
        ...

    async def suspend(self) -> None:
        """Keep the bytes written so far for a later :meth:`Store.begin_upload`
        of the same file to resume, and finish.  A no-op when finished;
        runs to its end even when the caller is cancelled meanwhile.  NoSpace
        (bytes dropped) or StoreError when they cannot be kept."""
        ...

    async def abort(self) -> None:
        """Drop the bytes written so far and finish; a no-op when finished."""
        ...


class StreamHandle(Protocol):
    """An upload whose size is known only at its end, made by
    :meth:`Store.begin_stream`: its bytes go straight to where the store
    keeps an upload in progress (a partial file, a multipart upload), never
    under the final name before :meth:`commit`.  It cannot be resumed, so
    there is no suspend: whatever stops it before its commit drops its bytes.
    ``transfer`` names it for logs; ``offset`` is the bytes written so far.
    """

    transfer: str
    offset: int

    async def write(self, offset: int, data: Buffer) -> None:
        """Append ``data`` at byte ``offset``, which must equal :attr:`offset`.

        IntegrityError (the upload stays live) when ``offset`` is not the
        current end; TooLarge (live) when the bytes would pass the store's
        ``max_file_size``; NoSpace when the store is full and StoreError for
        other failures or when finished (the upload is finished then, its
        bytes dropped)."""
        ...

    async def commit(self, digest: bytes, size: int) -> Entry:
        """Check that exactly ``size`` bytes were written and that they hash
        to ``digest``, then publish them under the final name, atomically as
        :meth:`UploadHandle.commit` does, and return the entry.
        IntegrityError when either differs (bytes dropped); BadName, Exists,
        NoSpace or StoreError as for :meth:`UploadHandle.commit`.  Finished
        either way."""
        ...

    async def abort(self) -> None:
        """Drop the bytes written so far and finish; a no-op when finished.
        Runs to its end even when the caller is cancelled meanwhile."""
        ...


class Store(Protocol):
    """What the daemon needs of a store (module docstring for units and errors).

    :meth:`open` before anything else, :meth:`close` at the end; every other
    method raises StoreError while the store is not open.  Names are stored
    files' names as the protocol carries them (``a/b.txt``).
    """

    @property
    def location(self) -> str:
        """Where the files are, for people: a directory, a URL."""
        ...

    def usage(self) -> StoreUsage:
        """What the store holds besides its files and how much room is left,
        for monitoring; cheap enough to call at every metrics scrape."""
        ...

    def lost(self) -> str | None:
        """Why the store can no longer be served at all, for a person (a
        local root, or its catalog, deleted or moved while the daemon ran),
        or None; the daemon stops when it is not None.  Cheap and blocking: a few
        system calls.  An object store says None: its failures are each
        request's."""
        return None

    def mend(self) -> str | None:
        """Put back what the store needs and someone removed while it was
        open (a local store's partials' directory, or its catalog's
        write-ahead log), saying what for the log, or None.  Blocking, and
        cheap unless something is put back; the daemon calls it when
        :meth:`lost` says None."""
        return None

    async def open(self) -> None:
        """Make the store ready, settling what a crash left half done (so
        that every entry listed can be served); StoreError when it cannot."""
        ...

    async def close(self) -> None:
        """Suspend the uploads still live (they stay resumable) and release
        the store."""
        ...

    async def begin_upload(
        self, *, name: str, size: int, mtime_ns: int, mode: int, algo: str, clobber: bool, peer: str
    ) -> UploadHandle:
        """Start, or resume, an upload of ``size`` bytes to ``name``.

        Refuses, in this order: a bad name or an unusable path (BadName), an
        unknown ``algo`` or a negative ``size`` (ZfileError bad-request), a
        size over the store's limit (TooLarge), an existing file of that name
        unless ``clobber`` (Exists), too little room for the bytes still to
        come (NoSpace), another live upload of the same file (Busy).  What an
        earlier upload of the same name, size, mtime_ns and algo left is
        resumed: the handle's ``offset`` says where to go on.
        """
        ...

    async def begin_stream(
        self, *, name: str, mtime_ns: int, mode: int, algo: str, clobber: bool, peer: str
    ) -> StreamHandle:
        """Start an upload to ``name`` whose size is given only at its
        commit (:class:`StreamHandle`).  Refuses, in this order: a bad name
        or an unusable path (BadName), an unknown ``algo`` (ZfileError
        bad-request), an existing file of that name unless ``clobber``
        (Exists).  The size is held to the store's limit as the bytes come
        (TooLarge), and free space is the writes' to find short (NoSpace).
        """
        ...

    async def put_inline(
        self,
        *,
        name: str,
        size: int,
        mtime_ns: int,
        mode: int,
        algo: str,
        clobber: bool,
        peer: str,
        data: Buffer,
        digest: bytes,
    ) -> Entry:
        """Store a whole file held in memory and return its entry.

        The refusals of :meth:`begin_upload` and :meth:`UploadHandle.commit`
        apply, and IntegrityError when ``data`` is not ``size`` bytes.  What
        an upload of the same file left is dropped, not resumed.
        """
        ...

    async def put_many(self, files: Sequence[PutFile], *, algo: str, peer: str) -> list[Entry | ZfileError]:
        """Store whole files held in memory (one PUT-MANY) and return, for
        each file in order, its entry or the error :meth:`put_inline` would
        have raised for it; a refused file never stops the others.  ``algo``
        is the algorithm of every file's digest, ``peer`` who sent them all.
        A second file of the same name, size and mtime in one batch is Busy.
        """
        ...

    async def open_download(self, name: str) -> DownloadHandle:
        """Open ``name`` for reading.  BadName for a bad name or an unusable
        path; NotFound when the store has no such file, or its entry has no
        readable file behind it; StoreError for other failures."""
        ...

    async def lookup(self, name: str) -> Entry:
        """The entry of ``name``; BadName or NotFound."""
        ...

    async def delete(self, name: str) -> Entry:
        """Remove the stored file ``name`` and return the entry it had.

        Atomic for readers: a download opened before goes on reading that
        version to its end, one opened after gets NotFound; an upload still
        running to the name may publish it again later.  BadName, NotFound,
        StoreError.
        """
        ...

    async def delete_many(self, names: Sequence[str]) -> list[Entry | ZfileError]:
        """Remove the stored files ``names`` as :meth:`delete` does, more
        cheaply than one by one, and return for each, in order, the entry it
        had or the error :meth:`delete` would have raised for it (BadName,
        NotFound, StoreError); one file's error never stops the others.
        StoreError or NoSpace (raised) when the store fails as a whole."""
        ...

    async def rename(self, old: str, new: str, *, clobber: bool = False) -> Entry:
        """Rename the stored file ``old`` to ``new`` and return its entry
        under the new name (size, mtime, mode, digest, received and peer
        unchanged).  A local store does it in one step for readers (the old
        name or the new, never both or neither); what an object store
        promises is its own (docs/s3.md).  BadName for a bad name or an
        unusable path, ZfileError bad-request when the names are equal,
        NotFound when ``old`` is not stored, Exists when ``new`` is and
        ``clobber`` is off, StoreError or NoSpace.
        """
        ...

    async def list(self, prefix: str = "", after: str = "", limit: int = 1000) -> list[Entry]:
        """Up to ``limit`` entries whose names start with ``prefix`` and sort
        after ``after`` (a cursor: the last name of the previous page), in
        order of their names' UTF-8 bytes.  BadName for a bad prefix or
        cursor."""
        ...

    async def held(self, names: Sequence[str]) -> dict[str, Held]:
        """What a CHECK compares (:data:`~zfile.protocol.quickcheck.Held`:
        size, mtime_ns, algo, digest) of those of ``names`` the store holds,
        by name; a name it does not hold, or could not hold (a bad name), is
        left out.  StoreError when the store fails as a whole."""
        ...

    async def sweep_partials(self, now: float | None = None) -> int:
        """Drop what suspended uploads left that has gone unused longer than
        the store keeps it, as of ``now`` (default: the current time), except
        what a live upload holds.  Returns how many uploads' leftovers were
        dropped; StoreError when they cannot be listed."""
        ...


__all__ = ["ChunkStream", "DownloadHandle", "Store", "StreamHandle", "UploadHandle"]
