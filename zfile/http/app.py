"""The HTTP front: an aiohttp application over the daemon's :class:`~zfile.store.Store`.

:class:`HttpFront` runs in the daemon's event loop (``start`` after the
store opens, ``stop`` while the daemon drains) and answers:

- ``GET``/``HEAD /files/<name>``: the file (:mod:`zfile.http.files`);
- ``PUT /files/<name>``: store the body under ``name``;
- ``DELETE /files/<name>``: remove it (204);
- ``GET``/``HEAD /files/<prefix>/`` and ``/``: a listing (:mod:`zfile.http.listing`);
- ``POST /files/<prefix>/``: files from a form (:mod:`zfile.http.form`);
- ``GET /metrics``: counters in the Prometheus text format (:mod:`zfile.http.metrics`).

Names come from the raw request target, percent-decoded as UTF-8 and checked
with :func:`zfile.protocol.names.check_name` (or ``check_prefix``) before the
store is touched: ``..``, ``%2e%2e``, NUL, an absolute path or undecodable
bytes get 400.  With a token file every request needs ``Authorization:
Bearer TOKEN``: ``read`` for GET and HEAD, ``write`` for PUT, POST and DELETE (401
without a known token, 403 with a read token).  Every request is logged as
one line of logger ``zfile.http``: method, path, status, bytes (of the
file received or sent, else of the body sent), seconds, peer (fields of their own in the JSON log format).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import weakref
from urllib.parse import unquote

from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler

from zfile.errors import (
    BadName,
    Busy,
    ConfigError,
    ErrorCode,
    Exists,
    IntegrityError,
    NameConflict,
    NoSpace,
    NotFound,
    StoreError,
    TooLarge,
    ZfileError,
)
from zfile.http.access import Access, Tokens, load_access, load_tls, parse_address
from zfile.http.files import BYTES, STARTED, get_file, put_file
from zfile.http.form import post_form
from zfile.http.listing import list_html, list_json, wants_json
from zfile.http.metrics import CONTENT_TYPE, Metrics
from zfile.protocol.names import check_name, check_prefix, quote_name
from zfile.store import Store

log = logging.getLogger("zfile.http")

# No handler reads a body whole (PUT and POST stream it), so this bounds only
# what aiohttp itself would buffer for request.read() or post().
_MAX_BUFFERED_BODY = 1 << 20

# Most specific first: BadName and the others subclass StoreError.
_STATUS: tuple[tuple[type[ZfileError], int], ...] = (
    (NameConflict, 409),
    (BadName, 400),
    (NotFound, 404),
    (Exists, 409),
    (TooLarge, 413),
    (NoSpace, 507),
    (Busy, 503),
    (IntegrityError, 422),
    (StoreError, 500),
)


def status_of(exc: ZfileError) -> int:
    """The HTTP status of a zfile error: 400 bad name or request, 404, 409
    exists or a name that clashes with the store's tree, 413 too large, 422
    integrity, 503 busy, 507 no space, else 500."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400 if exc.code is ErrorCode.BAD_REQUEST else 500


def target(request: web.Request) -> tuple[str, str]:
    """What the raw request target names: ``("page", "")`` for ``/``,
    ``("metrics", "")`` for ``/metrics``,
    ``("dir", prefix)`` for ``/files/`` and ``/files/<prefix>/``,
    ``("file", name)`` for ``/files/<name>``.  BadName (400) for a name the
    store's rules refuse or bytes that are not UTF-8; HTTPNotFound elsewhere."""
    path = request.raw_path.split("?", 1)[0]
    if path == "/":
        return "page", ""
    if path == "/metrics":
        return "metrics", ""
    if not path.startswith("/files/"):
        raise web.HTTPNotFound(text="not found: the files are under /files/\n")
    try:
        rest = unquote(path[len("/files/") :], errors="strict")
    except UnicodeDecodeError:
        raise BadName("the path is not percent-encoded UTF-8") from None
    if rest == "" or rest.endswith("/"):
        return "dir", check_prefix(rest)
    return "file", check_name(rest)


_NEEDS = {"GET": Access.READ, "HEAD": Access.READ, "PUT": Access.WRITE, "POST": Access.WRITE, "DELETE": Access.WRITE}
_ALLOWED = {
    "page": ("GET", "HEAD"),
    "metrics": ("GET", "HEAD"),
    "dir": ("GET", "HEAD", "POST"),
    "file": ("GET", "HEAD", "PUT", "DELETE"),
}


class HttpFront:
    """The HTTP front of ``store`` on ``address`` (``HOST:PORT``).

    ``tokens`` is a token file (:class:`zfile.http.access.Tokens`) or None
    for no authentication, which only a loopback address or ``insecure``
    allows.  ``max_file_size`` and ``max_name_bytes`` are the store's limits
    in bytes; requests still running at :meth:`stop` get
    ``shutdown_timeout`` seconds.  A request whose client sends or takes
    no byte of a body for ``idle_timeout`` seconds is ended (an upload's
    partial is released); at most ``max_uploads`` PUTs and POSTs run at
    once, more get 503 with ``Retry-After``.  With ``read_only`` every
    PUT, POST and DELETE is refused with 405 (``Allow: GET, HEAD``) and a
    body saying the daemon is read-only, before any byte of a body is read.
    """

    def __init__(
        self,
        store: Store,
        *,
        address: str,
        tokens: str | None = None,
        insecure: bool = False,
        max_file_size: int = 1 << 40,
        max_name_bytes: int = 4096,
        shutdown_timeout: float = 30.0,
        idle_timeout: float = 60.0,
        max_uploads: int = 256,
        cert: str | None = None,
        key: str | None = None,
        read_only: bool = False,
    ) -> None:
        self.store = store
        self.address = address
        self.host, self.port = parse_address(address)
        self.tokens_path = tokens
        self.insecure = insecure
        self.max_file_size = max_file_size
        self.max_name_bytes = max_name_bytes
        self.shutdown_timeout = shutdown_timeout
        self.idle_timeout = idle_timeout
        self.max_uploads = max_uploads
        self._uploads = 0
        self.cert, self.key = cert, key
        self.read_only = read_only
        self._tls: ssl.SSLContext | None = None
        self.tokens: Tokens | None = None
        self._checked = False
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Task[None] | None = None
        # Every connection a request came on, until it is gone: stop() waits
        # for what their transports still hold.
        self._transports: weakref.WeakSet[asyncio.Transport] = weakref.WeakSet()
        self.metrics = Metrics()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.cert else 'http'}://{host}:{self.port}"

    def check(self) -> None:
        """Refuse a non-loopback address without tokens unless ``insecure``
        (ConfigError), and load the token file and the TLS certificate
        (ConfigError)."""
        self._checked = True
        self.tokens = load_access(self.address, self.tokens_path, self.insecure)
        self._tls = load_tls(self.cert, self.key)

    async def start(self) -> None:
        """Check the access rules (:meth:`check`) and listen; ConfigError, or
        OSError when the address cannot be bound."""
        if not self._checked:
            self.check()
        app = web.Application(middlewares=[self._observe], client_max_size=_MAX_BUFFERED_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle, expect_handler=self._expect)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, ssl_context=self._tls).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        auth = f"{len(self.tokens)} token(s)" if self.tokens else "no tokens"
        auth += ", TLS" if self._tls else ", no TLS"
        log.info("HTTP on %s, %s", self.url, auth)

    def reload(self) -> None:
        """Re-read the token file (SIGHUP); one that fails to load leaves the old tokens."""
        if self.tokens is None:
            return
        try:
            count = self.tokens.reload()
        except ConfigError as exc:
            log.error("HTTP tokens not reloaded, keeping %d: %s", len(self.tokens), exc)
        else:
            log.info("reloaded %d HTTP token(s) from %s", count, self.tokens.path)

    async def stop(self) -> None:
        """Stop listening, give running requests ``shutdown_timeout`` seconds,
        then close; return once every answer given has left the process (or
        the same timeout is over).  Calls after the first wait for the same stop."""
        if self._runner is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._close(self._runner), name="zfile-http-stop")
        await asyncio.shield(self._stopping)

    async def _close(self, runner: web.AppRunner) -> None:
        deadline = time.monotonic() + self.shutdown_timeout
        await runner.cleanup()
        # A handler returns once the tail of its answer is in the transport's
        # buffer, not in the kernel's; aiohttp then closes the transport, which
        # goes on writing that tail only while the event loop runs.  A daemon
        # that exited now would cut a finished download short.
        while time.monotonic() < deadline and any(t.get_write_buffer_size() for t in list(self._transports)):
            await asyncio.sleep(0.01)

    # -- requests ----------------------------------------------------------------

    def _refusal(self, request: web.Request) -> tuple[str, str]:
        """The request's target, after the checks that need no store: its
        path (400), its method (405), its token (401, 403) and a change to a
        read-only store (405)."""
        kind, value = target(request)
        if request.method not in _ALLOWED[kind]:
            raise web.HTTPMethodNotAllowed(request.method, _ALLOWED[kind], text=f"{request.method} not allowed here\n")
        if self.tokens is not None:
            have = self.tokens.access(request.headers.get("Authorization"))
            if have is Access.NONE:
                raise web.HTTPUnauthorized(
                    headers={"WWW-Authenticate": 'Bearer realm="zfile"'}, text="a bearer token is needed\n"
                )
            if have < _NEEDS[request.method]:
                raise web.HTTPForbidden(text="this token may only read\n")
        if self.read_only and _NEEDS[request.method] is Access.WRITE:
            raise web.HTTPMethodNotAllowed(
                request.method,
                ("GET", "HEAD"),
                text=f"this daemon is read-only (zfile serve --read-only): {request.method} refused\n",
            )
        return kind, value

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        # Refuse before "100 Continue", so a client never sends a body that is not wanted.
        began = time.monotonic()
        try:
            self._refusal(request)
        except web.HTTPException as exc:
            self._log(request, exc.status, 0, began)
            kept = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
            return web.Response(status=exc.status, headers=kept, text=exc.text)
        except ZfileError as exc:
            self._log(request, status_of(exc), 0, began)
            return web.Response(status=status_of(exc), text=f"{exc}\n")
        return await _default_expect_handler(request)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        kind, value = self._refusal(request)
        if kind == "metrics":
            return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})
        if request.method in ("PUT", "POST"):
            return await self._upload(request, kind, value)
        if kind == "file":
            try:
                if request.method == "DELETE":
                    await self.store.delete(value)
                    return web.Response(status=204)
                return await get_file(self.store, request, value, self.idle_timeout)
            except NotFound:
                if not await self.store.list(f"{value}/", "", 1):
                    raise
            if request.method == "DELETE":
                raise web.HTTPConflict(
                    text=f"{quote_name(value)} is a directory in the store; DELETE removes one file\n"
                )
            # A directory named without its slash: redirected as a web server does (nginx, Apache).
            url = request.rel_url
            query = f"?{url.raw_query_string}" if url.raw_query_string else ""
            raise web.HTTPMovedPermanently(location=f"{url.raw_path}/{query}")
        if kind == "dir" and wants_json(request):
            return await list_json(self.store, request, value)
        return await list_html(self.store, request, value)

    async def _upload(self, request: web.Request, kind: str, value: str) -> web.Response:
        if self._uploads >= self.max_uploads:
            raise web.HTTPServiceUnavailable(
                headers={"Retry-After": "1"}, text=f"{self.max_uploads} uploads are running; try again shortly\n"
            )
        self._uploads += 1
        try:
            if kind == "file":
                return await put_file(
                    self.store, request, value, max_file_size=self.max_file_size, idle=self.idle_timeout
                )
            return await post_form(
                self.store,
                request,
                value,
                max_file_size=self.max_file_size,
                max_name_bytes=self.max_name_bytes,
                idle=self.idle_timeout,
            )
        finally:
            self._uploads -= 1

    @web.middleware
    async def _observe(self, request: web.Request, handler) -> web.StreamResponse:
        request[BYTES] = 0
        began = time.monotonic()
        if request.transport is not None:
            self._transports.add(request.transport)
        status = 500
        self.metrics.in_flight.inc()
        try:
            response = await handler(request)
            status = response.status
            self._count_body(request, response)
            return response
        except web.HTTPException as exc:
            status = exc.status
            self._count_body(request, exc)
            raise
        except ZfileError as exc:
            status = status_of(exc)
            if request.get(STARTED):
                # The head is out: all that is left is to cut the body short.
                log.error("%s %s failed after the response began: %s", request.method, request.path, exc)
                raise
            response = web.Response(status=status, text=f"{exc}\n")
            self._count_body(request, response)
            return response
        except ConnectionError:
            # The client went away (499: nginx's convention).  Nothing can reach
            # it; aiohttp drops a response to a closed connection quietly, where
            # the error raised on would be logged with a traceback.
            status = 499
            return web.Response(status=status)
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            self.metrics.in_flight.dec()
            self._log(request, status, request[BYTES], began)

    @staticmethod
    def _count_body(request: web.Request, response: object) -> None:
        """When no file moved, count the small body sent instead (a listing, an error's sentence)."""
        body = getattr(response, "body", None)
        if not request[BYTES] and request.method != "HEAD" and isinstance(body, bytes):
            request[BYTES] = len(body)

    def _log(self, request: web.Request, status: int, nbytes: int, began: float) -> None:
        seconds = time.monotonic() - began
        self.metrics.observe(request.method, status, nbytes, seconds)
        peer = request.remote or "?"
        fields = dict(method=request.method, path=request.raw_path, status=status, bytes=nbytes, seconds=seconds)
        log.info(
            "%s %s %d %d B %.3f s %s",
            request.method,
            request.raw_path,
            status,
            nbytes,
            seconds,
            peer,
            extra=fields | {"peer": peer},
        )
