"""The client library: :class:`~zfile.client.client.Client` over one DEALER
socket, streaming, small-file batches and tree planning."""
