"""The daemon's store: what the server needs of one, and the local backend."""
