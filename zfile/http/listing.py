"""Listings over HTTP: ``GET /files/<prefix>/`` and the browser page at ``/``.

JSON (``Accept: application/json``): the entries whose names start with the
prefix, at any depth, as a JSON array of ``zfile ls --json``'s objects, one
page of them; a full page carries ``Link: <...?after=NAME&limit=N>;
rel="next"`` (RFC 8288) to the next one.  HTML: one directory level, its
subdirectories and files with sizes, times, digests and download links, and
a form that uploads files into it (``POST`` to the same URL).  Both page with
``?after=NAME`` (the last name of the previous page) and ``?limit=N``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from zfile.http.files import files_url
from zfile.protocol.entries import entry_json
from zfile.protocol.events import Entry
from zfile.store import Store

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
# Sorts after every name below a directory that does not itself start with
# it (names sort by UTF-8 bytes; U+10FFFF is the largest code point): the
# cursor that skips a whole subdirectory.
_PAST = "\U0010ffff"


def paging(request: web.Request) -> tuple[str, int]:
    """``(after, limit)`` of the query; 400 for a limit not in 1-1000."""
    after = request.query.get("after", "")
    text = request.query.get("limit", str(DEFAULT_LIMIT))
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise web.HTTPBadRequest(text=f"limit must be a whole number from 1 to {MAX_LIMIT}\n")
    return after, int(text)


def wants_json(request: web.Request) -> bool:
    """True when the client asks for JSON rather than HTML."""
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


async def list_json(store: Store, request: web.Request, prefix: str) -> web.Response:
    """One page of the entries under ``prefix`` as a JSON array."""
    after, limit = paging(request)
    entries = await store.list(prefix, after, limit)
    headers = {}
    if len(entries) == limit:
        query = urlencode({"after": entries[-1].name, "limit": limit})
        headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    body = json.dumps([entry_json(e) for e in entries], ensure_ascii=False)
    return web.Response(text=body, content_type="application/json", headers=headers)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a directory page: a subdirectory (``entry`` None) or a file."""

    name: str  # relative to the directory; a subdirectory's ends with "/"
    entry: Entry | None


async def directory(store: Store, prefix: str, after: str, limit: int) -> tuple[list[Row], str | None]:
    """Up to ``limit`` rows of the directory ``prefix`` after the cursor
    ``after``, and the cursor of the next page (None on the last page)."""
    rows: list[Row] = []
    seen: set[str] = set()
    cursor = after
    while len(rows) < limit:
        batch = await store.list(prefix, cursor, limit)
        if not batch:
            return rows, None
        for entry in batch:
            rel = entry.name[len(prefix) :]
            cursor = entry.name
            if "/" not in rel:
                rows.append(Row(rel, entry))
            else:
                sub = rel.split("/", 1)[0] + "/"
                if sub not in seen:
                    seen.add(sub)
                    rows.append(Row(sub, None))
                # Skip the rest of the subdirectory: one more query instead of its every entry.
                cursor = prefix + sub + _PAST
                break
            if len(rows) == limit:
                break
    return rows, cursor


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { padding: .3em .9em; text-align: left; border-bottom: 1px solid #ddd; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: .9em; color: #555; }
form { margin: 1.5em 0; padding: 1em; background: #f4f4f4; display: inline-block; }
"""


def render(prefix: str, rows: list[Row], next_cursor: str | None, limit: int) -> str:
    """The HTML page of the directory ``prefix``."""
    esc = html.escape
    title = "/" + prefix
    lines = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>zfile {esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>zfile: <code>{esc(title)}</code></h1>",
    ]
    if prefix:
        parent = prefix[:-1].rpartition("/")[0]
        up = esc(files_url(parent + "/" if parent else ""))
        lines.append(f'<p><a id="parent" href="{up}">parent directory</a></p>')
    lines.append('<table id="listing"><thead><tr><th>Name</th><th>Size</th><th>Modified (UTC)</th>')
    lines.append("<th>BLAKE3</th><th></th></tr></thead><tbody>")
    for row in rows:
        url = esc(files_url(prefix + row.name))
        if row.entry is None:
            cells = "<td></td>" * 4
            lines.append(f'<tr class="dir"><td><a href="{url}">{esc(row.name)}</a></td>{cells}</tr>')
            continue
        e = row.entry
        lines.append(
            f'<tr class="file"><td>{esc(row.name)}</td><td class="n" title="{e.size} bytes">{_size(e.size)}</td>'
            f'<td>{_when(e.mtime_ns / 1e9)}</td><td><code title="{e.digest.hex()}">{e.digest.hex()[:16]}</code></td>'
            f'<td><a class="download" href="{url}" download>download</a></td></tr>'
        )
    if not rows:
        lines.append('<tr><td colspan="5">(empty)</td></tr>')
    lines.append("</tbody></table>")
    if next_cursor is not None:
        query = esc(urlencode({"after": next_cursor, "limit": limit}))
        lines.append(f'<p><a id="next" href="{esc(files_url(prefix))}?{query}">next page</a></p>')
    lines += [
        f'<form id="upload" method="post" action="{esc(files_url(prefix))}" enctype="multipart/form-data">',
        f"<p>Upload into <code>{esc(title)}</code> (a file of the same name is replaced)</p>",
        '<input type="file" name="file" multiple required> <button type="submit">Upload</button></form>',
        "</body></html>",
    ]
    return "\n".join(lines) + "\n"


async def list_html(store: Store, request: web.Request, prefix: str) -> web.Response:
    """The directory page of ``prefix``."""
    after, limit = paging(request)
    rows, next_cursor = await directory(store, prefix, after, limit)
    return web.Response(text=render(prefix, rows, next_cursor, limit), content_type="text/html")
