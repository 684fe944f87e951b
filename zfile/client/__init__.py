"""The client library: :class:`~zfile.client.client.Client` over one DEALER
socket (configured by a :class:`~zfile.client.config.ClientConfig`), a
channel per transfer, streaming, small-file batches, tree planning, and the
blocking :class:`~zfile.client.sync.SyncClient`.  The public names are
exported from :mod:`zfile`."""
