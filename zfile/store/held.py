"""Store.held for a store whose catalog is read by listing (an object
store): the entries under the names' first directories, a page at a time."""

from __future__ import annotations

from collections.abc import Sequence

from zfile.errors import BadName
from zfile.protocol.names import listing_prefixes
from zfile.protocol.quickcheck import Held
from zfile.store.base import Store

#: Entries asked for per page.
PAGE = 1000


async def held_by_listing(store: Store, names: Sequence[str]) -> dict[str, Held]:
    """What a CHECK compares of those of ``names`` ``store`` holds, by name
    (Store.held), from :meth:`Store.list` under
    :func:`~zfile.protocol.names.listing_prefixes` of the names: a name no
    prefix of which a store could hold (BadName) is not held.  Raises what
    Store.list raises otherwise."""
    wanted = set(names)
    found: dict[str, Held] = {}
    for prefix in listing_prefixes(wanted):
        after = ""
        while True:
            try:
                page = await store.list(prefix, after, PAGE)
            except BadName:
                break
            found.update((e.name, (e.size, e.mtime_ns, e.algo, e.digest)) for e in page if e.name in wanted)
            if len(page) < PAGE:
                break
            after = page[-1].name
    return found


__all__ = ["held_by_listing"]
