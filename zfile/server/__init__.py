"""The daemon: :class:`~zfile.server.server.Server` (startup, receive loop,
graceful shutdown), the transfers in flight, its config values, systemd
notification and logging."""
