"""What the HTTP front counts, in the Prometheus text format (``GET /metrics``),
through the ``prometheus_client`` library.

Each :class:`Metrics` has a registry of its own, so two fronts in one
process (tests) do not share counters.  Names, units in their suffixes:

- ``zfile_http_requests_total{method,status}``: requests answered;
- ``zfile_http_request_seconds{method}``: a histogram of their durations;
- ``zfile_http_requests_in_flight``: requests being answered now;
- ``zfile_http_received_bytes_total`` and ``zfile_http_sent_bytes_total``:
  body bytes of PUT/POST requests and of GET responses;
- ``zfile_http_uploads_total{result}``: PUT and form uploads by result
  (``committed`` or ``failed``);

- ``zfile_transfers_total{direction,result}``: ZeroMQ transfers ended, by
  direction (``in``, ``out``) and result (``ok``, ``refused``, ``suspended``
  for resume, ``failed``), fed by :meth:`Metrics.transfer_done`;
- ``zfile_transfer_bytes_total{direction}`` and
  ``zfile_transfer_seconds{direction}``: their bytes and a histogram of
  their durations;

and whatever the daemon adds with :meth:`Metrics.watch` (the ZeroMQ
transfers in flight, the store's partials and free bytes).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Seconds; from a cached listing to a gigabyte over a slow link.
_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 3600.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The HTTP front's counters (module docstring for the names)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("zfile_http_requests", "HTTP requests answered", ["method", "status"], registry=r)
        self.seconds = Histogram(
            "zfile_http_request_seconds", "Time to answer an HTTP request", ["method"], buckets=_BUCKETS, registry=r
        )
        self.in_flight = Gauge("zfile_http_requests_in_flight", "HTTP requests being answered", registry=r)
        self.received = Counter("zfile_http_received_bytes", "Body bytes received over HTTP", registry=r)
        self.sent = Counter("zfile_http_sent_bytes", "Body bytes sent over HTTP", registry=r)
        self.uploads = Counter("zfile_http_uploads", "Uploads over HTTP, by result", ["result"], registry=r)
        for result in ("committed", "failed"):
            self.uploads.labels(result)
        self.transfers = Counter(
            "zfile_transfers", "ZeroMQ transfers ended, by direction and result", ["direction", "result"], registry=r
        )
        self.transfer_bytes = Counter(
            "zfile_transfer_bytes", "File bytes moved by ZeroMQ transfers", ["direction"], registry=r
        )
        self.transfer_seconds = Histogram(
            "zfile_transfer_seconds", "Duration of a ZeroMQ transfer", ["direction"], buckets=_BUCKETS, registry=r
        )

    def watch(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge ``name`` whose value is ``read()`` at each scrape."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def observe(self, method: str, status: int, nbytes: int, seconds: float) -> None:
        """Count one answered request: ``nbytes`` body bytes, ``seconds`` long."""
        self.requests.labels(method, str(status)).inc()
        self.seconds.labels(method).observe(seconds)
        if method in ("PUT", "POST"):
            self.received.inc(nbytes)
            self.uploads.labels("committed" if status in (201, 303) else "failed").inc()
        elif method == "GET":
            self.sent.inc(nbytes)

    def transfer_done(self, direction: str, nbytes: int, seconds: float, result: str) -> None:
        """Count one ended ZeroMQ transfer: ``direction`` "in" or "out",
        ``nbytes`` file bytes, ``seconds`` long, ``result`` as its log line
        says it ("ok", "ok 3 of 5", "refused", "suspended", "failed: ...")."""
        kind = result.split(" ", 1)[0].rstrip(":")
        self.transfers.labels(direction, kind if kind in ("ok", "refused", "suspended") else "failed").inc()
        self.transfer_bytes.labels(direction).inc(nbytes)
        self.transfer_seconds.labels(direction).observe(seconds)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
