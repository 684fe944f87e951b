"""The transport boundary: the only code that imports zmq.

:mod:`~zfile.transport.sockets` (the daemon's ROUTER socket speaking protocol
events), :mod:`~zfile.transport.dealer` (the client's DEALER, and what its
link's monitor tells), :mod:`~zfile.transport.curve` (CurveZMQ keys and the
authorized keys the ZAP handler consults), :mod:`~zfile.transport.endpoint`
(the ENDPOINT a user types).  ``zmq.ZMQError`` never leaves this package: it
becomes a :class:`~zfile.errors.TransportError`.
"""
