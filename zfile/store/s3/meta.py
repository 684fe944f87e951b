"""A stored file's catalog entry as S3 user metadata (``x-amz-meta-zfile-*``),
and back.

Every object the backend publishes carries its entry in its metadata, so a
HeadObject answers ``ls`` and ``stat`` without a GET and any daemon on the
bucket reads the same catalog.  Values are ASCII (S3 sends metadata as HTTP
headers): integers in decimal, the digest in hex, the peer percent-encoded.
The name is the object's key less the store's prefix.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from zfile.protocol.events import Entry

_P = "zfile-"
#: The key that marks a multipart upload's object with its transfer id
#: until the entry is finished (:func:`pending_metadata`).
TRANSFER = f"{_P}transfer"


def to_metadata(entry: Entry) -> dict[str, str]:
    """``entry`` (all but its name) as the ``Metadata`` of a PutObject or CopyObject."""
    return {
        f"{_P}size": str(entry.size),
        f"{_P}mtime-ns": str(entry.mtime_ns),
        f"{_P}mode": f"{entry.mode:o}",
        f"{_P}algo": entry.algo,
        f"{_P}digest": entry.digest.hex(),
        f"{_P}received": repr(float(entry.received)),
        f"{_P}id": entry.id,
        f"{_P}peer": quote(entry.peer, safe=""),
    }


def pending_metadata(entry: Entry, transfer: str) -> dict[str, str]:
    """The ``Metadata`` a multipart upload is created with: ``entry`` less
    its digest (not known yet, so the object is no entry until
    the digest is written), and the ``transfer`` id, so that a later
    daemon can tell this upload's completed object from another's."""
    metadata = to_metadata(entry)
    del metadata[f"{_P}digest"]
    metadata[TRANSFER] = transfer
    return metadata


def from_metadata(name: str, metadata: dict[str, str], length: int) -> Entry | None:
    """The entry of ``name`` from an object's metadata (as HeadObject returns
    it: lower-case keys without ``x-amz-meta-``) and its ``length`` in bytes;
    None when the object is not one zfile published (metadata missing or
    unreadable, or a size that is not the object's)."""
    try:
        size = int(metadata[f"{_P}size"])
        entry = Entry(
            name=name,
            size=size,
            mtime_ns=int(metadata[f"{_P}mtime-ns"]),
            mode=int(metadata[f"{_P}mode"], 8),
            algo=metadata[f"{_P}algo"],
            digest=bytes.fromhex(metadata[f"{_P}digest"]),
            received=float(metadata[f"{_P}received"]),
            id=metadata.get(f"{_P}id", ""),
            peer=unquote(metadata.get(f"{_P}peer", "")),
        )
    except (KeyError, ValueError):
        return None
    return entry if size == length else None
